"""Tests of consumer/airflow/gate.py: the outage gate probing a scripted Airflow (tests/faults)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from consumer.airflow import AirflowClient
from consumer.airflow.gate import AirflowGate
from consumer.errors import ConfigError
from tests.airflow.conftest import connection_for
from tests.faults.server import FaultInjector, Reply

VERSION = "/api/v2/version"


@pytest.fixture
def client(faults: FaultInjector) -> Iterator[AirflowClient]:
    """A v2 client with a static token for the fault injector."""
    connection = connection_for(faults.url, api_version="v2", token=SecretStr("gate-token"))
    with AirflowClient(connection) as made:
        yield made


def test_answers_is_false_with_a_reason_while_airflow_fails(
    faults: FaultInjector, client: AirflowClient
) -> None:
    """A 503 from the version endpoint is an outage: answers() is False and says why."""
    faults.script("GET", VERSION, Reply(503))
    gate = AirflowGate(client, threading.Event())
    assert gate.answers() is False
    assert gate.reason is not None
    assert "503" in gate.reason


def test_refused_credentials_are_not_an_outage(
    faults: FaultInjector, client: AirflowClient
) -> None:
    """A 401 is a ConfigError that stops the worker, not a reason to wait."""
    faults.script("GET", VERSION, Reply(401, {"detail": "Not authenticated"}))
    with pytest.raises(ConfigError, match="401"):
        AirflowGate(client, threading.Event()).answers()


def test_wait_until_up_returns_true_once_airflow_answers_again(
    faults: FaultInjector, client: AirflowClient
) -> None:
    """After one failed probe and the first back-off, the next probe succeeds and the gate opens."""
    faults.script("GET", VERSION, Reply(503), Reply(200, {"version": "3.0.0"}))
    gate = AirflowGate(client, threading.Event())
    assert gate.wait_until_up() is True
    assert (gate.available, gate.reason) == (True, None)
    assert len(faults.seen("GET", VERSION)) == 2


def test_wait_until_up_returns_false_when_the_worker_stops(
    faults: FaultInjector, client: AirflowClient
) -> None:
    """A stopping worker abandons the wait at once, without probing; the gate stays closed."""
    faults.script("GET", VERSION, Reply(503))
    stop = threading.Event()
    stop.set()
    gate = AirflowGate(client, stop)
    assert gate.stopping
    assert gate.wait_until_up() is False
    assert gate.available is False
    assert faults.seen() == []
