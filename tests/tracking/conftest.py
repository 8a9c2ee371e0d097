"""Fixtures of the tracking tests: a fresh store, clients of the real Airflow, a stop flag."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from consumer.airflow import AirflowApi, make_airflow_client
from consumer.settings import Settings
from consumer.store import IdempotencyStore, open_store
from devstack.airflow import AirflowServer
from tests.tracking.tracked import RETENTION


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A store URL on a fresh temporary file."""
    return f"sqlite:///{tmp_path}/s.db"


@pytest.fixture
def store(store_url: str) -> Iterator[IdempotencyStore]:
    """An open store on the temporary file, closed after the test."""
    opened = open_store(store_url, RETENTION)
    yield opened
    opened.close()


@pytest.fixture
def client_for() -> Iterator[Callable[..., AirflowApi]]:
    """Factory: an Airflow client for a devstack server (its admin unless told otherwise).

    It talks to the server's own URL, or to ``url`` (a fault proxy in front of it).
    """
    made: list[AirflowApi] = []

    def make(
        server: AirflowServer, password: str | None = None, url: str | None = None
    ) -> AirflowApi:
        described = server.describe()
        client = make_airflow_client(
            Settings(
                airflow_url=url or server.url,
                airflow_username=described["username"],
                airflow_password=SecretStr(password or described["password"]),
            )
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    """A stop flag, set after the test so no tracking thread outlives it."""
    event = threading.Event()
    yield event
    event.set()
