"""Fixtures for the managed-Airflow tests: stand-ins of each service in front of the real stack."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consumer.airflow import AirflowClient, AirflowConnection
from consumer.settings import Settings
from devstack.airflow import AirflowServer
from tests.cloud.mwaa_standin import ENVIRONMENT, MwaaStandIn
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import Topics, WorkerProcess, worker_env

MWAA_URL = "https://standin.airflow.example"  # only the runs' links use it


def long_run_id() -> str:
    """A ``kafka__`` run id whose run path is past MWAA's 64 characters."""
    return f"kafka__{uuid.uuid4().hex}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mwaa(airflow: AirflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MwaaStandIn]:
    """An InvokeRestApi stand-in in front of each real Airflow; this process's AWS env on it."""
    standin = MwaaStandIn(airflow)
    for name, value in standin.aws_env().items():
        monkeypatch.setenv(name, value)
    yield standin
    standin.close()


@pytest.fixture
def mwaa_client() -> Iterator[Callable[..., AirflowClient]]:
    """Factory: a client with AIRFLOW_AUTH=mwaa (connection fields overridable); closed after."""
    made: list[AirflowClient] = []

    def make(**fields: Any) -> AirflowClient:
        settings = Settings(airflow_url=MWAA_URL, airflow_auth="mwaa", mwaa_environment=ENVIRONMENT)
        client = AirflowClient(replace(AirflowConnection.from_settings(settings), **fields))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def cloud_topics(new_topic: Callable[..., str]) -> Topics:
    """Request, reply and dead-letter topics and a group of the scenario's own."""
    return Topics(
        requests=new_topic(partitions=1, prefix="requests"),
        replies=new_topic(partitions=1, prefix="replies"),
        dlq=new_topic(partitions=1, prefix="dlq"),
        group=unique_name("group"),
    )


@pytest.fixture
def cloud_worker(
    kafka: KafkaCluster, cloud_topics: Topics, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: a worker process for ``airflow`` with its Airflow credentials replaced."""
    made: list[WorkerProcess] = []

    def make(airflow: AirflowServer, env: dict[str, str]) -> WorkerProcess:
        base = worker_env(
            bootstrap=kafka.bootstrap_servers,
            airflow=airflow,
            topics=cloud_topics,
            store=tmp_path / "store.db",
            extra={"TRIGGER_CONSUMER_TRACK_POLL_INTERVAL": "1s"},
        )
        for name in ("TRIGGER_CONSUMER_AIRFLOW_USERNAME", "TRIGGER_CONSUMER_AIRFLOW_PASSWORD"):
            base.pop(name)
        worker = WorkerProcess(env={**base, **env}, log=tmp_path / "worker.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()
