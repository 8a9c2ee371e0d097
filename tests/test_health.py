"""Tests of consumer/health.py: the real HTTP server's three routes over a Readiness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from consumer.health import HealthServer
from consumer.kafka_io.offsets import Partition
from consumer.metrics import Metrics
from consumer.readiness import Readiness
from tests.ready_state import ManualClock, ready_state

TIMEOUT = 5.0


@pytest.fixture
def clock() -> ManualClock:
    """A fresh manual clock."""
    return ManualClock()


@pytest.fixture
def readiness(clock: ManualClock) -> Readiness:
    """A ready Readiness on the manual clock."""
    return ready_state(clock)


@pytest.fixture
def metrics() -> Metrics:
    """A fresh Metrics in its own registry."""
    return Metrics()


@pytest.fixture
def base_url(readiness: Readiness, metrics: Metrics) -> Iterator[str]:
    """A running HealthServer on 127.0.0.1 and an ephemeral port; closed after the test."""
    with HealthServer(0, readiness, metrics) as server:
        yield f"http://127.0.0.1:{server.port}"


def test_healthz_and_readyz_answer_200_when_ready(base_url: str) -> None:
    """A ready worker answers 200 with the documented JSON bodies."""
    healthz = requests.get(f"{base_url}/healthz", timeout=TIMEOUT)
    readyz = requests.get(f"{base_url}/readyz", timeout=TIMEOUT)

    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    assert (readyz.status_code, readyz.json()) == (200, {"ready": True})
    assert readyz.headers["Content-Type"] == "application/json"


def test_fatal_turns_both_endpoints_503_with_the_reason(
    base_url: str, readiness: Readiness
) -> None:
    """After a fatal error /healthz and /readyz answer 503 and name it."""
    readiness.set_fatal("bad TLS configuration")

    healthz = requests.get(f"{base_url}/healthz", timeout=TIMEOUT)
    readyz = requests.get(f"{base_url}/readyz", timeout=TIMEOUT)

    assert healthz.status_code == 503
    assert healthz.json() == {"status": "unhealthy", "reasons": ["fatal: bad TLS configuration"]}
    assert readyz.status_code == 503
    assert readyz.json() == {"ready": False, "reasons": ["fatal: bad TLS configuration"]}


def test_stale_progress_turns_readyz_then_healthz_503(
    base_url: str, readiness: Readiness, clock: ManualClock
) -> None:
    """A stuck loop fails /readyz after 30 s and /healthz after 120 s; a tick recovers both."""
    clock.advance(60)
    readyz = requests.get(f"{base_url}/readyz", timeout=TIMEOUT)
    assert readyz.status_code == 503
    assert readyz.json()["reasons"] == ["no loop progress for 60s (limit 30s)"]
    assert requests.get(f"{base_url}/healthz", timeout=TIMEOUT).status_code == 200

    clock.advance(61)
    assert requests.get(f"{base_url}/healthz", timeout=TIMEOUT).status_code == 503

    readiness.loop_tick()
    assert requests.get(f"{base_url}/healthz", timeout=TIMEOUT).status_code == 200
    assert requests.get(f"{base_url}/readyz", timeout=TIMEOUT).status_code == 200


def test_airflow_outage_turns_readyz_503_and_back(base_url: str, readiness: Readiness) -> None:
    """/readyz follows Airflow availability while /healthz stays 200 (STYLE §14 check)."""
    readiness.set_airflow(False, "connection refused")

    readyz = requests.get(f"{base_url}/readyz", timeout=TIMEOUT)
    assert readyz.status_code == 503
    assert readyz.json()["reasons"] == ["airflow unavailable: connection refused"]
    assert requests.get(f"{base_url}/healthz", timeout=TIMEOUT).status_code == 200

    readiness.set_airflow(True)
    assert requests.get(f"{base_url}/readyz", timeout=TIMEOUT).status_code == 200


def test_metrics_serves_prometheus_text_with_observed_values(
    base_url: str, metrics: Metrics
) -> None:
    """/metrics serves the Prometheus text of the worker's own registry."""
    metrics.observe_outcome("triggered", None, 0.2)
    metrics.set_lag({Partition("dag-trigger-requests", 2): 11})

    response = requests.get(f"{base_url}/metrics", timeout=TIMEOUT)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'trigger_consumer_requests_total{code="none",status="triggered"} 1.0' in response.text
    assert 'trigger_consumer_lag{partition="2",topic="dag-trigger-requests"} 11.0' in response.text
    assert "trigger_consumer_end_to_end_seconds_count 1.0" in response.text


def test_unknown_paths_are_404(base_url: str) -> None:
    """Only the three routes exist."""
    response = requests.get(f"{base_url}/admin", timeout=TIMEOUT)

    assert response.status_code == 404
    assert response.json() == {"error": "not found", "path": "/admin"}


def test_requests_are_not_logged_to_stderr(
    base_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Probe requests leave no access-log lines on stderr."""
    requests.get(f"{base_url}/healthz", timeout=TIMEOUT)
    requests.get(f"{base_url}/missing", timeout=TIMEOUT)

    assert capfd.readouterr().err == ""


def test_port_is_only_known_after_start_and_close_is_idempotent(
    readiness: Readiness, metrics: Metrics
) -> None:
    """Port 0 binds an ephemeral port on start; close releases it and may be repeated."""
    server = HealthServer(0, readiness, metrics, host="127.0.0.1")
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    server.start()
    try:
        assert server.port > 0
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert requests.get(url, timeout=TIMEOUT).status_code == 200
    finally:
        server.close()
    server.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=TIMEOUT)
