"""The servers a benchmark runs on: the devstack, fresh topics per contender, the request load."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from psycopg import sql

from devstack.airflow import AirflowServer
from devstack.procs import free_port
from devstack.stack import Stack
from devstack.worker_env import worker_environment

PAUSED_DAG = "devstack_paused"
UNPAUSED_DAG = "devstack_plain"
# the run ids benchmarks make: the worker's from their keys ("kafka__" + key), the direct
# POSTs' their own; every run tag starts with "bench-"
BENCH_RUN_IDS = ("bench-%", "kafka\\_\\_bench-%")


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
    postgres: str  # the server's admin URL (database ``postgres``): store databases go there
    databases: list[str] = field(default_factory=list)  # created by this run, dropped at its end

    @classmethod
    def up(cls, major: str, partitions: int) -> Rig:
        """Reuse (or start) Kafka, PostgreSQL and the Airflow of ``major``; never stops them.

        Logs and SQLite stores of the contenders go under the stack's run dir,
        ``bench/<tag>``; PostgreSQL stores are databases of their own (``store_database``).
        """
        stack = Stack()
        doc = stack.up(kafka=True, airflow=(major,), postgres=True)
        tag = time.strftime("bench-%Y%m%d%H%M%S")
        work = Path(doc["run_dir"]) / "bench" / tag
        work.mkdir(parents=True, exist_ok=True)
        return cls(
            bootstrap=doc["kafka"]["bootstrap_servers"],
            airflow=stack.airflow_server(major),
            run_tag=tag,
            work=work,
            partitions=partitions,
            postgres=doc["postgres"]["url"],
        )

    def store_database(self, contender: str) -> str:
        """Create an empty database for one contender's PostgreSQL store; return its URL.

        Each contender gets its own, so that no run sees another's keys.
        """
        slug = re.sub(r"[^a-z0-9]+", "_", f"{self.run_tag}_{contender}".lower())[:63]
        with psycopg.connect(self.postgres, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(slug)))
        self.databases.append(slug)
        return urlunsplit(urlsplit(self.postgres)._replace(path=f"/{slug}"))

    def drop_databases(self) -> None:
        """Drop the store databases this run created (their workers have stopped)."""
        with psycopg.connect(self.postgres, autocommit=True) as conn:
            for name in self.databases:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.databases.clear()

    def forget_runs(self) -> None:
        """Delete the DAG runs benchmarks left in Airflow's database (finished or queued).

        A full run used to leave about 20,000 queued runs: kept, they slowed every later
        contender's trigger calls and the scheduler, so throughput decayed across
        contenders and runs. Running runs are left to finish. Airflow's API has no bulk
        delete of runs, so this is SQL on the devstack's own metadata database (a run's task
        instances go with it: ON DELETE CASCADE). A failure is printed, not raised.
        """
        url = self.airflow.database_url.replace("+psycopg2", "")
        if not url.startswith("postgresql"):
            return
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "DELETE FROM dag_run WHERE state <> 'running' "
                    "AND (run_id LIKE %s OR run_id LIKE %s)",
                    BENCH_RUN_IDS,
                )
        except psycopg.Error as exc:
            print(f"could not delete the benchmark's DAG runs: {exc}", flush=True)

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
        """The environment of ``trigger-consumer run`` (and of the baselines) on this rig.

        ``store`` is the SQLite file; a ``TRIGGER_CONSUMER_STORE_URL`` in ``extra`` wins.
        """
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


def request_value(key: str, dag_id: str, *, track: bool = False) -> bytes:
    """A request as a producer writes it (contract v1); ``track`` asks for a ``completed`` reply."""
    body: dict[str, Any] = {"idempotency_key": key, "dag_id": dag_id, "conf": {"i": key[-6:]}}
    if track:
        body["track"] = True
    return json.dumps(body).encode()
