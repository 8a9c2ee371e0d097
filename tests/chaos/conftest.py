"""Fixtures of the nemesis: a broker and an Airflow API server of its own, so faults stay local.

The broker is paused and restarted by the nemesis, and the API server stopped: on the
shared stack both would disturb other tests. Runs are still made by the shared Airflow 3
(same home and database) and its scheduler.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.airflow import AirflowServer
from devstack.kafka import KafkaBroker, start_broker
from tests.chaos.targets import AirflowPath, StoreFaults
from tests.chaos.trial import Stage, StageFactory


@pytest.fixture(scope="module")
def chaos_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker of the nemesis's own: pausing or restarting it disturbs no other test."""
    broker = start_broker(tmp_path_factory.mktemp("chaos-kafka"), tie_to_parent=True)
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)  # a trial that failed while it was paused
        broker.stop()


@pytest.fixture(scope="module")
def chaos_airflow(airflow3: AirflowServer) -> Iterator[AirflowPath]:
    """The nemesis's own Airflow 3 API server behind a delay proxy and a fault proxy."""
    path = AirflowPath.open(airflow3)
    try:
        yield path
    finally:
        path.close()


@pytest.fixture
def chaos_stage(
    chaos_broker: KafkaBroker, chaos_airflow: AirflowPath, airflow3: AirflowServer, tmp_path: Path
) -> StageFactory:
    """Factory: the trial's stage (own broker, own API path, shared Airflow) on a given store."""

    def make(store: StoreFaults, store_url: str) -> Stage:
        return Stage(
            broker=chaos_broker,
            airflow=airflow3,
            path=chaos_airflow,
            store=store,
            store_url=store_url,
            work=tmp_path,
        )

    return make
