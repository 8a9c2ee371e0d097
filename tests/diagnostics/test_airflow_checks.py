"""The Airflow checks against the real Airflow 3 and Airflow 2."""

from __future__ import annotations

import socket
import uuid
from typing import Any

from pydantic import SecretStr

from consumer.diagnostics.airflow_checks import airflow_checks
from consumer.settings import Settings, load_settings
from devstack.airflow import AirflowServer
from tests.faults.server import FaultInjector, Reply

TIMEOUT = 3.0
NAMES = ["airflow", "airflow credentials", "DAG allow-list 'devstack_*'", "paused DAGs"]


def _settings(airflow: AirflowServer, **overrides: Any) -> Settings:
    described = airflow.describe()
    values: dict[str, Any] = {
        "airflow_url": airflow.url,
        "airflow_username": described["username"],
        "airflow_password": SecretStr(described["password"]),
        "dag_allowlist": ("devstack_*",),
    }
    return load_settings(**{**values, **overrides})


def test_each_airflow_passes_with_its_version_and_dags(airflow: AirflowServer) -> None:
    """Airflow 3 and 2 pass: version and API, credentials, the devstack DAGs, the paused one."""
    results = airflow_checks(_settings(airflow), TIMEOUT)
    assert [result.name for result in results] == NAMES
    assert all(result.ok for result in results), results
    assert results[0].detail == (
        f"Airflow {airflow.version} at {airflow.url} (REST API {airflow.api_version})"
    )
    assert "devstack_fails" in results[2].detail  # the first five by name are shown
    assert results[3].warning
    assert "devstack_paused" in results[3].detail


def test_a_wrong_password_fails_the_credentials_check(airflow: AirflowServer) -> None:
    """A wrong password fails credentials (JWT login on 3, 403 on 2) and skips the allow-list."""
    password = f"wrong-{uuid.uuid4().hex}"
    results = airflow_checks(_settings(airflow, airflow_password=SecretStr(password)), TIMEOUT)
    assert [(result.name, result.ok) for result in results] == [
        ("airflow", True),
        ("airflow credentials", False),
        ("DAG allow-list", False),
        ("paused DAGs", False),
    ]
    assert results[1].remedy is not None
    assert "TRIGGER_CONSUMER_AIRFLOW_PASSWORD" in results[1].remedy
    assert all(password not in f"{result.detail}{result.remedy}" for result in results)


def test_a_closed_port_fails_the_airflow_check() -> None:
    """Nothing listening at the URL fails the airflow check, naming TRIGGER_CONSUMER_AIRFLOW_URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = airflow_checks(load_settings(airflow_url=f"http://127.0.0.1:{port}"), TIMEOUT)
    assert [result.ok for result in results] == [False, False, False, False]
    assert results[0].remedy is not None
    assert "TRIGGER_CONSUMER_AIRFLOW_URL" in results[0].remedy


def test_an_airflow_older_than_supported_fails_with_upgrade_as_the_remedy() -> None:
    """An Airflow 2.3.0 fails the airflow check, naming the version, with "upgrade" to do."""
    faults = FaultInjector()
    faults.script("GET", "/api/v1/version", Reply(200, {"version": "2.3.0"}))
    try:
        results = airflow_checks(load_settings(airflow_url=faults.url), TIMEOUT)
    finally:
        faults.close()
    assert (results[0].name, results[0].ok) == ("airflow", False)
    assert "Airflow 2.3.0" in results[0].detail
    assert "2.6.0 or later" in results[0].detail
    assert results[0].remedy == "upgrade Airflow (README: Versions)"
