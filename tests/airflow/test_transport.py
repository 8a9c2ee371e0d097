"""The retry loop, auth refresh and TLS handling, against the fault injector (tests/faults).

These are the faults a real Airflow cannot be made to show on demand: 503 sequences, 429 with
Retry-After, a stalled answer, a refused connection and a self-signed certificate.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from consumer.airflow import AirflowClient, RetryPolicy
from consumer.errors import AirflowError, AirflowUnavailableError, ConfigError, ErrorCode
from devstack.procs import free_port
from tests.airflow.conftest import FAST_RETRY, connection_for, new_run_id
from tests.faults.handshake import HandshakeCutter
from tests.faults.server import FaultInjector, Reply, run_body

DAG = "fault_dag"
RUNS = f"/api/v2/dags/{DAG}/dagRuns"
TOKEN = SecretStr("fault-static-token")


def make_client(url: str, stop: threading.Event | None = None, **options: Any) -> AirflowClient:
    """A v2 client with a static token and fast, jitter-free retries."""
    settings: dict[str, Any] = {
        "api_version": "v2",
        "token": TOKEN,
        "retry": FAST_RETRY,
        "read_timeout": 2.0,
        "connect_timeout": 2.0,
    }
    settings.update(options)
    return AirflowClient(connection_for(url, **settings), stop=stop)


def test_three_503s_then_200_triggers_after_four_attempts(faults: FaultInjector) -> None:
    """Transient 503s are retried; the result counts every POST."""
    run_id = new_run_id()
    faults.script(
        "POST", RUNS, Reply(503), Reply(503), Reply(503), Reply(200, run_body(DAG, run_id))
    )
    with make_client(faults.url) as client:
        result = client.trigger(DAG, run_id)
    assert (result.created, result.attempts) == (True, 4)
    assert len(faults.seen("POST", RUNS)) == 4
    assert all(s.body["dag_run_id"] == run_id for s in faults.seen("POST", RUNS))


def test_429_with_retry_after_seconds_is_honoured(faults: FaultInjector) -> None:
    """A 429 with ``Retry-After: 2`` makes the next try wait two seconds, not the short backoff."""
    run_id = new_run_id()
    faults.script(
        "POST", RUNS, Reply(429, headers={"Retry-After": "2"}), Reply(200, run_body(DAG, run_id))
    )
    with make_client(faults.url) as client:
        result = client.trigger(DAG, run_id)
    first, second = faults.seen("POST", RUNS)
    assert second.at - first.at >= 2.0
    assert result.attempts == 2


def test_503_with_retry_after_http_date_is_honoured(faults: FaultInjector) -> None:
    """Retry-After as an HTTP-date is honoured too."""
    run_id = new_run_id()
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    faults.script(
        "POST", RUNS, Reply(503, headers={"Retry-After": later}), Reply(200, run_body(DAG, run_id))
    )
    with make_client(faults.url) as client:
        client.trigger(DAG, run_id)
    first, second = faults.seen("POST", RUNS)
    # an HTTP-date has whole seconds: the wait is between 1 and 2 s
    assert second.at - first.at >= 1.0


def test_stalled_answer_times_out_and_is_retried(faults: FaultInjector) -> None:
    """A POST that stalls past the read timeout is retried and the run is created."""
    run_id = new_run_id()
    faults.script("POST", RUNS, Reply(stall=30), Reply(200, run_body(DAG, run_id)))
    with make_client(faults.url, read_timeout=0.5) as client:
        result = client.trigger(DAG, run_id)
    assert (result.created, result.attempts) == (True, 2)


def test_timed_out_post_then_409_may_have_made_the_run(
    faults: FaultInjector,
) -> None:
    """Stall, then 409, then the run exists: the lost POST may have made it (spec §3)."""
    run_id = new_run_id()
    faults.script("POST", RUNS, Reply(stall=30), Reply(409, {"detail": "conflict"}))
    faults.script("GET", f"{RUNS}/{run_id}", Reply(200, run_body(DAG, run_id, "running")))
    with make_client(faults.url, read_timeout=0.5) as client:
        result = client.trigger(DAG, run_id)
    assert (result.created, result.may_have_reached) == (False, True)
    assert (result.state, result.attempts) == ("running", 3)


def test_409_without_an_earlier_attempt_is_a_duplicate(faults: FaultInjector) -> None:
    """A first-try 409 whose run exists is a duplicate: created is False."""
    run_id = new_run_id()
    faults.script("POST", RUNS, Reply(409, {"detail": "conflict"}))
    faults.script("GET", f"{RUNS}/{run_id}", Reply(200, run_body(DAG, run_id, "success")))
    with make_client(faults.url) as client:
        result = client.trigger(DAG, run_id)
    assert (result.created, result.state, result.attempts) == (False, "success", 2)


def test_409_clash_without_logical_date_is_retried_until_created(faults: FaultInjector) -> None:
    """A 409 whose run does not exist, with no logical date asked for, is retried (Airflow 2)."""
    run_id = new_run_id()
    faults.script("POST", RUNS, Reply(409, {"detail": "clash"}), Reply(200, run_body(DAG, run_id)))
    faults.script("GET", f"{RUNS}/{run_id}", Reply(404, {"detail": "not found"}))
    with make_client(faults.url) as client:
        result = client.trigger(DAG, run_id)
    assert (result.created, result.attempts) == (True, 3)


def test_connection_refused_retries_until_the_budget_then_is_unavailable() -> None:
    """Nothing listening: every attempt fails, then airflow_unavailable with reachable False."""
    policy = RetryPolicy(base=0.01, jitter=False, max_attempts=4, max_elapsed=None)
    client = make_client(f"http://127.0.0.1:{free_port()}", retry=policy)
    with client, pytest.raises(AirflowUnavailableError) as caught:
        client.trigger(DAG, new_run_id())
    error = caught.value
    assert error.code is ErrorCode.AIRFLOW_UNAVAILABLE
    assert error.retryable
    assert error.details["attempts"] == 4
    assert error.details["history"] == ["ConnectFailed"] * 4
    assert error.details["reachable"] is False


def test_persistent_503_exhausts_the_budget_with_reachable_true(faults: FaultInjector) -> None:
    """Airflow answering only 503 gives airflow_unavailable, and says it was reachable."""
    faults.script("POST", RUNS, Reply(503))
    with make_client(faults.url) as client, pytest.raises(AirflowUnavailableError) as caught:
        client.trigger(DAG, new_run_id())
    assert caught.value.details["attempts"] == FAST_RETRY.max_attempts
    assert caught.value.details["reachable"] is True


def test_stop_event_ends_a_retry_wait_at_once(faults: FaultInjector) -> None:
    """Setting ``stop`` (shutdown) makes a call waiting to retry give up immediately."""
    faults.script("POST", RUNS, Reply(503, headers={"Retry-After": "60"}))
    stop = threading.Event()
    stop.set()
    began = time.monotonic()
    with (
        make_client(faults.url, stop=stop) as client,
        pytest.raises(AirflowUnavailableError) as caught,
    ):
        client.trigger(DAG, new_run_id())
    assert caught.value.details["stopped"] is True
    assert time.monotonic() - began < 5


def test_self_signed_tls_fails_closed_as_a_config_error(tls_faults: FaultInjector) -> None:
    """An untrusted certificate raises ConfigError at once, with no retries."""
    with make_client(tls_faults.url) as client, pytest.raises(ConfigError, match="TLS"):
        client.trigger(DAG, new_run_id())


def test_tls_passes_with_the_ca_bundle(tls_faults: FaultInjector, ca_bundle: Path) -> None:
    """The same server is trusted once its CA bundle is configured."""
    run_id = new_run_id()
    tls_faults.script("POST", RUNS, Reply(200, run_body(DAG, run_id)))
    with make_client(tls_faults.url, ca_bundle=ca_bundle) as client:
        assert client.trigger(DAG, run_id).created


def test_invalid_jwt_403_refreshes_the_token_once(faults: FaultInjector) -> None:
    """A 403 "Invalid JWT token" drops the token; one new token is fetched and the call resent."""
    run_id = new_run_id()
    faults.script("POST", "/auth/token", Reply(201, {"access_token": "a.b.c"}))
    faults.script(
        "POST", RUNS, Reply(403, {"detail": "Invalid JWT token"}), Reply(200, run_body(DAG, run_id))
    )
    with make_client(
        faults.url, token=None, username="u", password=SecretStr("fault-password")
    ) as client:
        result = client.trigger(DAG, run_id)
    assert result.attempts == 2
    assert len(faults.seen("POST", "/auth/token")) == 2


def test_401_that_survives_a_refresh_is_a_config_error(faults: FaultInjector) -> None:
    """Credentials refused again after one refresh stop the worker: ConfigError."""
    faults.script("POST", "/auth/token", Reply(201, {"access_token": "a.b.c"}))
    faults.script("POST", RUNS, Reply(401, {"detail": "Not authenticated"}))
    with (
        make_client(
            faults.url, token=None, username="u", password=SecretStr("fault-password")
        ) as client,
        pytest.raises(ConfigError, match="401"),
    ):
        client.trigger(DAG, new_run_id())
    assert len(faults.seen("POST", RUNS)) == 2


def test_static_token_403_is_a_config_error_without_refresh(faults: FaultInjector) -> None:
    """A static token cannot be refreshed: the first 403 is fatal."""
    faults.script("POST", RUNS, Reply(403, {"detail": "Forbidden"}))
    with make_client(faults.url) as client, pytest.raises(ConfigError, match="403") as caught:
        client.trigger(DAG, new_run_id())
    assert faults.seen("POST", RUNS)[0].headers["Authorization"] == "Bearer fault-static-token"
    assert "fault-static-token" not in f"{caught.value} {client!r}"


def test_bad_run_ids_never_reach_airflow(faults: FaultInjector) -> None:
    """Run ids Airflow would refuse (or answer with a 500 page) are refused before sending."""
    with make_client(faults.url) as client:
        for run_id in ("a b", "a/b", "x" * 249, "scheduled__x", "dataset_triggered__x", "..", ""):
            with pytest.raises(AirflowError) as caught:
                client.trigger(DAG, run_id)
            assert caught.value.code is ErrorCode.AIRFLOW_REJECTED
    assert faults.seen() == []


def test_naive_logical_date_is_refused_before_sending(faults: FaultInjector) -> None:
    """A logical date without a zone is airflow_rejected and never sent."""
    with make_client(faults.url) as client, pytest.raises(Exception) as caught:
        client.trigger(DAG, new_run_id(), logical_date=datetime(2025, 1, 1))
    assert getattr(caught.value, "code", None) is ErrorCode.AIRFLOW_REJECTED
    assert faults.seen() == []


def test_settings_that_cannot_work_are_config_errors(tmp_path: Path) -> None:
    """Credentials in the URL, both auth kinds, a lone username or a missing CA file fail early."""
    password = SecretStr("pw")
    with pytest.raises(ConfigError):
        AirflowClient(connection_for("http://admin:pw@127.0.0.1:1"))
    with pytest.raises(ConfigError):
        AirflowClient(
            connection_for("http://127.0.0.1:1", token=TOKEN, username="a", password=password)
        )
    with pytest.raises(ConfigError):
        AirflowClient(connection_for("http://127.0.0.1:1", username="a"))
    with pytest.raises(ConfigError):
        AirflowClient(connection_for("http://127.0.0.1:1", ca_bundle=tmp_path / "missing.pem"))


def test_tls_handshake_cut_short_once_is_retried_not_fatal(
    tls_faults: FaultInjector, ca_bundle: Path
) -> None:
    """A TLS handshake cut short once (a load balancer restarting) is retried; the call succeeds."""
    run_id = new_run_id()
    tls_faults.script("POST", RUNS, Reply(200, run_body(DAG, run_id)))
    cutter = HandshakeCutter(tls_faults.url, cuts=1)
    try:
        with make_client(cutter.url, ca_bundle=ca_bundle) as client:
            result = client.trigger(DAG, run_id)
    finally:
        cutter.close()
    assert (result.created, result.attempts) == (True, 2)
    assert cutter.connections >= 2  # the cut one, then the retry (and the DAG look-up)
