"""Fixtures for the Airflow client tests: real-server clients, unique run ids, fault injectors."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from consumer.airflow import AirflowClient, AirflowConnection, RetryPolicy
from consumer.settings import Settings
from devstack.airflow import AirflowServer
from tests.faults.server import FaultInjector

# fast retries for fault tests: jitter off so the attempt count and timing are exact
FAST_RETRY = RetryPolicy(base=0.05, factor=2.0, max_delay=0.2, jitter=False, max_attempts=5)


def connection_for(url: str, **fields: Any) -> AirflowConnection:
    """The connection the default settings give for ``url``, with ``fields`` replaced."""
    return replace(AirflowConnection.from_settings(Settings(airflow_url=url)), **fields)


def new_run_id(prefix: str = "test") -> str:
    """A run id no other test (or rerun) uses."""
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture
def client_for() -> Iterator[Callable[..., AirflowClient]]:
    """Factory: a client for a real devstack Airflow with its admin credentials; closed after."""
    made: list[AirflowClient] = []

    def make(server: AirflowServer, **overrides: Any) -> AirflowClient:
        described = server.describe()
        options: dict[str, Any] = {
            "api_version": "auto",
            "username": described["username"],
            "password": SecretStr(described["password"]),
        }
        options.update(overrides)
        client = AirflowClient(connection_for(server.url, **options))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def faults() -> Iterator[FaultInjector]:
    """A plain-HTTP fault injector on a free port."""
    injector = FaultInjector()
    yield injector
    injector.close()


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    """A throwaway certificate authority that no system trust store knows."""
    return trustme.CA()


@pytest.fixture
def ca_bundle(test_ca: trustme.CA, tmp_path: Path) -> Path:
    """The test CA's certificate as a PEM file, for the client's ``ca_bundle``."""
    path = tmp_path / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def tls_faults(test_ca: trustme.CA) -> Iterator[FaultInjector]:
    """An HTTPS fault injector whose certificate for 127.0.0.1 is signed by ``test_ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1").configure_cert(context)
    injector = FaultInjector(tls=context)
    yield injector
    injector.close()


@pytest.fixture(scope="session")
def short_jwt_airflow3(airflow3: AirflowServer) -> Iterator[AirflowServer]:
    """A second Airflow 3 API server (same DB) issuing 5 s tokens with no expiry leeway."""
    short = airflow3.start_extra_api(
        {"AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "5", "AIRFLOW__API_AUTH__JWT_LEEWAY": "0"},
        tie_to_parent=True,
    )
    yield short
    short.stop_api()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the trigger latencies the latency test recorded, one line per Airflow version."""
    lines = [
        f"{name}: {value}"
        for report in terminalreporter.stats.get("passed", [])
        for name, value in getattr(report, "user_properties", [])
        if str(name).startswith("trigger latency")
    ]
    if lines:
        terminalreporter.section("Airflow trigger latency")
        for line in lines:
            terminalreporter.write_line(line)
