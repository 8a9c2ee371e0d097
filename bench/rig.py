"""The servers a benchmark runs on: the devstack, fresh topics per contender, the request load."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from devstack.airflow import USERNAME, AirflowServer
from devstack.stack import Stack

PAUSED_DAG = "devstack_paused"
UNPAUSED_DAG = "devstack_plain"


@dataclass(frozen=True)
class Topics:
    """The topics and group of one contender (unique per run and contender)."""

    requests: str
    replies: str
    dlq: str
    group: str


@dataclass
class Rig:
    """The running stack and this benchmark run's name space."""

    bootstrap: str
    airflow: AirflowServer
    run_tag: str
    work: Path
    partitions: int

    @classmethod
    def up(cls, major: str, partitions: int) -> Rig:
        """Reuse (or start) Kafka and the Airflow of ``major``; never stops them.

        Logs and stores of the contenders go under the stack's run dir, ``bench/<tag>``.
        """
        stack = Stack()
        doc = stack.up(kafka=True, airflow=(major,))
        tag = time.strftime("bench-%Y%m%d%H%M%S")
        work = Path(doc["run_dir"]) / "bench" / tag
        work.mkdir(parents=True, exist_ok=True)
        return cls(
            bootstrap=doc["kafka"]["bootstrap_servers"],
            airflow=stack.airflow_server(major),
            run_tag=tag,
            work=work,
            partitions=partitions,
        )

    def topics(self, contender: str) -> Topics:
        """Create the request (``partitions``), reply (``partitions``) and DLQ topics."""
        base = f"{self.run_tag}-{contender}"
        topics = Topics(f"{base}-requests", f"{base}-replies", f"{base}-dlq", f"{base}-group")
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics(
                [
                    NewTopic(topics.requests, self.partitions, 1),
                    NewTopic(topics.replies, self.partitions, 1),
                    NewTopic(topics.dlq, 1, 1),
                ]
            )
        finally:
            admin.close()
        return topics

    def worker_env(self, topics: Topics, store: Path, extra: dict[str, str]) -> dict[str, str]:
        """The environment of ``trigger-consumer run`` (and of the baselines) on this rig."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_CONSUMER_")}
        env.update(
            {
                "TRIGGER_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "TRIGGER_CONSUMER_KAFKA_GROUP_ID": topics.group,
                "TRIGGER_CONSUMER_REQUEST_TOPIC": topics.requests,
                "TRIGGER_CONSUMER_REPLY_TOPIC": topics.replies,
                "TRIGGER_CONSUMER_DLQ_TOPIC": topics.dlq,
                "TRIGGER_CONSUMER_AIRFLOW_URL": self.airflow.url,
                "TRIGGER_CONSUMER_AIRFLOW_USERNAME": USERNAME,
                "TRIGGER_CONSUMER_AIRFLOW_PASSWORD": self.airflow.describe()["password"],
                "TRIGGER_CONSUMER_DAG_ALLOWLIST": "devstack_*",
                "TRIGGER_CONSUMER_STORE_URL": f"sqlite:///{store}",
                "TRIGGER_CONSUMER_HTTP_PORT": str(free_port()),
                "TRIGGER_CONSUMER_LOG_FORMAT": "json",
                "TRIGGER_CONSUMER_SHUTDOWN_TIMEOUT": "20s",
            }
        )
        env.update(extra)
        return env


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def keys_for(run_tag: str, n: int) -> list[str]:
    """``n`` idempotency keys that no earlier run used."""
    return [f"{run_tag}-{i:06d}" for i in range(n)]


def request_value(key: str, dag_id: str) -> bytes:
    """A request as a producer writes it (contract v1)."""
    body: dict[str, Any] = {"idempotency_key": key, "dag_id": dag_id, "conf": {"i": key[-6:]}}
    return json.dumps(body).encode()
