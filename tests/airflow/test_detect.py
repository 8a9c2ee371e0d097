"""API version detection against the real Airflow 3 and 2, and the fault injector for the rest."""

from __future__ import annotations

import pytest
import requests
from pydantic import SecretStr

from consumer.airflow.detect import detect_api_version
from consumer.errors import AirflowUnavailableError, ConfigError
from devstack.airflow import AirflowServer
from devstack.procs import free_port
from tests.faults.server import FaultInjector, Reply

TIMEOUT = (5.0, 10.0)


def test_detects_each_real_version_without_credentials(airflow: AirflowServer) -> None:
    """Airflow 3 is detected as v2 and Airflow 2 as v1, with no credentials sent."""
    with requests.Session() as session:
        found = detect_api_version(session, airflow.url, timeout=TIMEOUT)
    assert found.api_version == airflow.api_version
    assert found.airflow_version == airflow.version


def test_falls_back_to_trying_the_jwt_login_when_version_needs_auth(
    faults: FaultInjector,
) -> None:
    """Behind a proxy that hides /version, a working POST /auth/token identifies Airflow 3."""
    faults.script("GET", "/api/v2/version", Reply(401, {"detail": "Not authenticated"}))
    faults.script("POST", "/auth/token", Reply(201, {"access_token": "a.b.c"}))
    with requests.Session() as session:
        found = detect_api_version(
            session, faults.url, timeout=TIMEOUT, username="u", password=SecretStr("pw")
        )
    assert found.api_version == "v2"


def test_falls_back_to_a_static_token_on_v1(faults: FaultInjector) -> None:
    """With a token, detection retries the version endpoints with it (v1 here)."""
    faults.script("GET", "/api/v1/version", Reply(403), Reply(200, {"version": "2.11.2"}))
    with requests.Session() as session:
        found = detect_api_version(session, faults.url, timeout=TIMEOUT, token=SecretStr("t"))
    assert (found.api_version, found.airflow_version) == ("v1", "2.11.2")


def test_a_server_that_is_not_airflow_is_a_config_error(faults: FaultInjector) -> None:
    """Nothing answers like Airflow: ConfigError naming the answers seen."""
    with requests.Session() as session, pytest.raises(ConfigError, match="404"):
        detect_api_version(session, faults.url, timeout=TIMEOUT)


def test_5xx_during_detection_is_transient(faults: FaultInjector) -> None:
    """A starting Airflow answering 503 is unavailable, not misconfigured."""
    faults.script("GET", "/api/v2/version", Reply(503))
    with requests.Session() as session, pytest.raises(AirflowUnavailableError):
        detect_api_version(session, faults.url, timeout=TIMEOUT)


def test_unreachable_server_is_transient() -> None:
    """Connection refused during detection raises AirflowUnavailableError."""
    with requests.Session() as session, pytest.raises(AirflowUnavailableError) as caught:
        detect_api_version(session, f"http://127.0.0.1:{free_port()}", timeout=TIMEOUT)
    assert caught.value.details["reachable"] is False


def test_an_airflow_older_than_supported_is_refused_naming_versions(
    faults: FaultInjector,
) -> None:
    """An Airflow 2.3.0 stops detection with ConfigError naming it and the supported floor."""
    faults.script("GET", "/api/v1/version", Reply(200, {"version": "2.3.0"}))
    with requests.Session() as session, pytest.raises(ConfigError) as caught:
        detect_api_version(session, faults.url, timeout=TIMEOUT)
    message = str(caught.value)
    assert "Airflow 2.3.0" in message
    assert "2.6.0 or later" in message
    assert faults.url in message
