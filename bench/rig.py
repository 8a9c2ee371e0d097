"""The servers a benchmark runs on: the devstack, fresh topics per contender, the request load."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from devstack.airflow import AirflowServer
from devstack.procs import free_port
from devstack.stack import Stack
from devstack.worker_env import worker_environment

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
        env = worker_environment(
            bootstrap=self.bootstrap,
            airflow=self.airflow,
            store=store,
            kafka_group_id=topics.group,
            request_topic=topics.requests,
            reply_topic=topics.replies,
            dlq_topic=topics.dlq,
            http_port=str(free_port()),
            shutdown_timeout="20s",
        )
        env.update(extra)
        return env


def keys_for(run_tag: str, n: int) -> list[str]:
    """``n`` idempotency keys that no earlier run used."""
    return [f"{run_tag}-{i:06d}" for i in range(n)]


def request_value(key: str, dag_id: str) -> bytes:
    """A request as a producer writes it (contract v1)."""
    body: dict[str, Any] = {"idempotency_key": key, "dag_id": dag_id, "conf": {"i": key[-6:]}}
    return json.dumps(body).encode()
