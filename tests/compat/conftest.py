"""Fixtures of the compatibility smoke: an older Airflow per test class, a Kafka 3 broker.

Each older Airflow starts only for its class (``RELEASE``) and stops after it, so that one
runs at a time beside the stack's own servers (2 cores). Its metadata lives in a database
of its own on the stack's PostgreSQL, as the stack's Airflows' do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from consumer.airflow import AirflowClient, AirflowConnection
from devstack import Stack
from devstack.airflow import AirflowServer
from devstack.kafka import KafkaBroker
from devstack.kafka3 import start_kafka3
from devstack.matrix import start_release
from tests.airflow.conftest import connection_for


@pytest.fixture(scope="class")
def release_airflow(request: pytest.FixtureRequest, stack: Stack) -> Iterator[AirflowServer]:
    """The class's Airflow ``RELEASE``, started for the class alone and stopped after it."""
    release: str = request.cls.RELEASE
    stack.up(kafka=False, postgres=True)
    assert stack.postgres is not None
    server = start_release(
        release, stack.postgres, stack.home / f"compat-airflow-{release}", tie_to_parent=True
    )
    yield server
    server.stop()


@pytest.fixture(scope="class")
def release_connection(release_airflow: AirflowServer) -> AirflowConnection:
    """How the worker reaches that Airflow: the API detected, the admin login."""
    described = release_airflow.describe()
    return connection_for(
        release_airflow.url,
        api_version="auto",
        username=described["username"],
        password=SecretStr(described["password"]),
    )


@pytest.fixture(scope="class")
def release_client(release_connection: AirflowConnection) -> Iterator[AirflowClient]:
    """The worker's own client for that Airflow."""
    with AirflowClient(release_connection) as client:
        yield client


@pytest.fixture(scope="module")
def kafka3(stack: Stack) -> Iterator[KafkaBroker]:
    """A Kafka 3.9 broker of its own (jars from Maven Central), stopped after the module."""
    broker = start_kafka3(stack.home / "compat-kafka3", tie_to_parent=True)
    yield broker
    broker.stop()
