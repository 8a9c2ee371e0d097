"""Tests of consumer/health.py: Readiness verdicts and the real HTTP server's three routes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from consumer.health import HealthServer, Readiness
from consumer.kafka_io.offsets import Partition
from consumer.metrics import Metrics

TIMEOUT = 5.0


class ManualClock:
    """A monotonic clock that only moves when told to, so staleness needs no sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        """Start at ``start`` seconds."""
        self.now = start

    def __call__(self) -> float:
        """Return the current time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.now += seconds


def ready_state(clock: ManualClock) -> Readiness:
    """A Readiness whose every condition holds at ``clock``'s current time."""
    readiness = Readiness(clock=clock)
    readiness.start()
    readiness.set_kafka(True)
    readiness.set_assigned({Partition("dag-trigger-requests", 0)})
    readiness.set_airflow(True)
    readiness.loop_tick()
    return readiness


@pytest.fixture
def clock() -> ManualClock:
    """A fresh manual clock."""
    return ManualClock()


@pytest.fixture
def metrics() -> Metrics:
    """A fresh Metrics in its own registry."""
    return Metrics()


@pytest.fixture
def readiness(clock: ManualClock) -> Readiness:
    """A ready Readiness on the manual clock."""
    return ready_state(clock)


@pytest.fixture
def base_url(readiness: Readiness, metrics: Metrics) -> Iterator[str]:
    """A running HealthServer on 127.0.0.1 and an ephemeral port; closed after the test."""
    with HealthServer(0, readiness, metrics) as server:
        yield f"http://127.0.0.1:{server.port}"


# -- Readiness, pure --------------------------------------------------------------------------
def test_a_fresh_readiness_is_not_ready_and_says_why() -> None:
    """Before the loop starts, every unmet condition is named."""
    ready, reasons = Readiness(clock=ManualClock()).verdict()

    assert not ready
    assert reasons == [
        "not started",
        "kafka not connected: not connected yet",
        "airflow unavailable: not checked yet",
    ]


def test_all_conditions_met_is_ready(readiness: Readiness) -> None:
    """Started, Kafka connected, assigned, Airflow available and recent progress is ready."""
    assert readiness.verdict() == (True, [])
    assert readiness.alive() == (True, [])


def test_an_empty_assignment_is_ready(clock: ManualClock) -> None:
    """A group with no partition for this worker still counts as assigned."""
    readiness = ready_state(clock)

    readiness.set_assigned(set())

    assert readiness.verdict() == (True, [])
    assert readiness.assigned == frozenset()


def test_no_assignment_yet_is_not_ready(clock: ManualClock) -> None:
    """Connected to Kafka but not yet through the first rebalance is not ready."""
    readiness = Readiness(clock=clock)
    readiness.start()
    readiness.set_kafka(True)
    readiness.set_airflow(True)

    assert readiness.verdict() == (False, ["no partition assignment yet"])


def test_assign_and_revoke_track_the_owned_partitions(readiness: Readiness) -> None:
    """Rebalance callbacks add and remove partitions; revoking everything stays ready."""
    first, second = Partition("dag-trigger-requests", 0), Partition("dag-trigger-requests", 1)

    readiness.assign({second})
    assert readiness.assigned == {first, second}
    readiness.revoke({first, second})

    assert readiness.assigned == frozenset()
    assert readiness.verdict() == (True, [])


def test_stale_progress_is_not_ready_but_still_alive(
    readiness: Readiness, clock: ManualClock
) -> None:
    """After 31 s without a loop iteration /readyz fails; /healthz waits for 120 s."""
    clock.advance(31)

    assert readiness.verdict() == (False, ["no loop progress for 31s (limit 30s)"])
    assert readiness.alive() == (True, [])
    clock.advance(90)
    assert readiness.alive() == (False, ["no loop progress for 121s (limit 120s)"])
    readiness.loop_tick()
    assert readiness.verdict() == (True, [])


def test_verdict_judges_at_the_given_time(readiness: Readiness, clock: ManualClock) -> None:
    """``now`` overrides the clock, so callers can ask "ready at time t?"."""
    assert readiness.verdict(now=clock.now + 29) == (True, [])
    assert readiness.verdict(now=clock.now + 31)[0] is False


def test_fatal_fails_both_verdicts_and_keeps_the_first_message(readiness: Readiness) -> None:
    """A fatal error makes the worker neither ready nor alive; a later one does not replace it."""
    readiness.set_fatal("airflow rejected the credentials")
    readiness.set_fatal("something later")

    assert readiness.fatal == "airflow rejected the credentials"
    assert readiness.verdict() == (False, ["fatal: airflow rejected the credentials"])
    assert readiness.alive() == (False, ["fatal: airflow rejected the credentials"])


def test_airflow_and_kafka_outages_carry_their_reason(readiness: Readiness) -> None:
    """An unavailable dependency is named with the reason the worker gave."""
    readiness.set_airflow(False, "503 from /api/v2/monitor/health")
    readiness.set_kafka(False, "no broker reachable")

    assert readiness.verdict() == (
        False,
        [
            "kafka not connected: no broker reachable",
            "airflow unavailable: 503 from /api/v2/monitor/health",
        ],
    )
    readiness.set_airflow(True, "ignored when available")
    readiness.set_kafka(True)
    assert readiness.verdict() == (True, [])


def test_stopping_is_not_ready_but_alive(readiness: Readiness) -> None:
    """While draining after SIGTERM the worker is alive but no longer ready."""
    readiness.set_stopping()

    assert readiness.verdict() == (False, ["stopping"])
    assert readiness.alive() == (True, [])


def test_a_loop_that_never_starts_dies_after_the_alive_bound(clock: ManualClock) -> None:
    """Without any loop iteration, liveness is measured from creation."""
    readiness = Readiness(clock=clock)

    assert readiness.alive() == (True, [])
    clock.advance(121)
    assert readiness.alive()[0] is False


# -- the HTTP server --------------------------------------------------------------------------
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
