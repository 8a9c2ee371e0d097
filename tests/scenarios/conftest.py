"""Fixtures for end-to-end scenarios: unique topics and a worker process factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import Topics, WorkerProcess, worker_env

REQUEST_PARTITIONS = 3


@pytest.fixture
def topics(new_topic: Callable[..., str]) -> Topics:
    """A 3-partition request topic, reply and dead-letter topics, and a group of their own."""
    return Topics(
        requests=new_topic(partitions=REQUEST_PARTITIONS, prefix="requests"),
        replies=new_topic(partitions=1, prefix="replies"),
        dlq=new_topic(partitions=1, prefix="dlq"),
        group=unique_name("group"),
    )


@pytest.fixture
def make_worker(
    kafka: KafkaCluster, airflow3: AirflowServer, topics: Topics, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory of worker processes sharing the scenario's topics, group and store."""
    made: list[WorkerProcess] = []

    def make(
        *, airflow: AirflowServer | None = None, name: str = "worker", **options: str
    ) -> WorkerProcess:
        password = options.pop("password", None)
        env = worker_env(
            bootstrap=kafka.bootstrap_servers,
            airflow=airflow or airflow3,
            topics=topics,
            store=tmp_path / f"{name}-store.db",
            password=password,
            extra={f"TRIGGER_CONSUMER_{k.upper()}": v for k, v in options.items()},
        )
        worker = WorkerProcess(env=env, log=tmp_path / f"{name}.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()
