"""AirflowClient against the real Airflow 3 and 2 of devstack (spec §3, §4, §5)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from consumer.airflow import AirflowClient, TriggerResult, make_airflow_client
from consumer.airflow.client import PROBE_RUN_ID
from consumer.errors import AirflowError, ConfigError, ErrorCode
from consumer.settings import Settings
from devstack.airflow import AirflowServer
from devstack.procs import free_port
from tests.airflow.conftest import FAST_RETRY, connection_for, new_run_id
from tests.faults.proxy import FaultProxy
from tests.waiting import wait_until

ClientFor = Callable[..., AirflowClient]


def unique_logical_date() -> datetime:
    """A past logical date (so the run can execute) that no other test picks."""
    offset = int(time.time_ns() // 1000) % (10 * 365 * 24 * 3600 * 1000)
    return datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=offset * 1000 + 7)


def stored_run(server: AirflowServer, dag_id: str, run_id: str) -> dict[str, Any]:
    """The run as Airflow stores it, read with devstack's own session."""
    url = f"{server.url}/api/{server.api_version}/dags/{dag_id}/dagRuns/{run_id}"
    with server.session() as session:
        answer = session.get(url, timeout=10)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body


def test_trigger_with_conf_note_and_logical_date(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """A new run is created with its conf, note and logical date; the URL opens it in the UI."""
    client = client_for(airflow)
    run_id = new_run_id()
    when = unique_logical_date()
    result = client.trigger("devstack_params", run_id, {"n": 7, "name": "bob"}, when, "a note")
    assert result.created is True
    assert (result.dag_id, result.dag_run_id, result.attempts) == ("devstack_params", run_id, 1)
    assert result.state in {"queued", "running", "success"}
    assert result.logical_date == when.replace(microsecond=when.microsecond)
    assert result.dag_paused is False
    stored = stored_run(airflow, "devstack_params", run_id)
    assert stored["conf"] == {"n": 7, "name": "bob"}
    assert stored["note"] == "a note"
    if airflow.major == "3":
        assert result.run_url == f"{airflow.url}/dags/devstack_params/runs/{run_id}"
    else:
        assert result.run_url == f"{airflow.url}/dags/devstack_params/grid?dag_run_id={run_id}"


def test_trigger_without_logical_date(airflow: AirflowServer, client_for: ClientFor) -> None:
    """No logical date: Airflow 3 stores null (sent as null), Airflow 2 stamps now (key omitted)."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    result = client_for(airflow).trigger("devstack_plain", new_run_id())
    assert result.created
    if airflow.major == "3":
        assert result.logical_date is None
    else:
        assert result.logical_date is not None and result.logical_date >= before


def test_second_trigger_is_a_duplicate_with_the_current_state(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """The same run id again is a duplicate (409 then GET) reporting the run's current state."""
    client = client_for(airflow)
    run_id = new_run_id()
    client.trigger("devstack_plain", run_id, {"k": 1})
    wait_until(
        lambda: (run := client.get_run("devstack_plain", run_id)) and run.state == "success",
        timeout=120,
        interval=0.5,
        what="the run to succeed",
    )
    again = client.trigger("devstack_plain", run_id, {"k": 1})
    assert (again.created, again.state, again.attempts) == (False, "success", 2)
    assert again.dag_run_id == run_id


def test_logical_date_clash_is_logical_date_conflict(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """Another run holding the requested logical date gives logical_date_conflict."""
    client = client_for(airflow)
    when = unique_logical_date()
    client.trigger("devstack_paused", new_run_id(), logical_date=when)
    with pytest.raises(AirflowError) as caught:
        client.trigger("devstack_paused", new_run_id(), logical_date=when)
    assert caught.value.code is ErrorCode.LOGICAL_DATE_CONFLICT
    assert caught.value.details["attempts"] == 2


def test_unknown_dag_is_dag_not_found(airflow: AirflowServer, client_for: ClientFor) -> None:
    """A 404 for the DAG gives dag_not_found, not retried."""
    with pytest.raises(AirflowError) as caught:
        client_for(airflow).trigger("no_such_dag_here", new_run_id())
    assert caught.value.code is ErrorCode.DAG_NOT_FOUND
    assert caught.value.details["status"] == 404
    assert caught.value.details["attempts"] == 1


def test_a_failed_look_up_after_409_does_not_claim_another_requests_run(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """409, then the run's GET answers 504 once: the run is found, and it is not ours.

    Only a POST whose answer was lost may have made the run; a failed GET after the 409
    used to share the POST's retry history and made ``created`` true.
    """
    run_id = new_run_id("other")
    client_for(airflow).trigger("devstack_paused", run_id)  # another request's run
    proxy = FaultProxy(airflow.url)
    try:
        proxy.fail_run_reads(504)
        client = AirflowClient(
            connection_for(
                proxy.url,
                username=airflow.describe()["username"],
                password=SecretStr(airflow.describe()["password"]),
                retry=FAST_RETRY,
            )
        )
        result = client.trigger("devstack_paused", run_id)
    finally:
        proxy.close()
    assert not result.created
    assert not result.may_have_reached
    assert result.attempts == 3  # POST 409, GET 504, GET 200
    run_calls = [method for method, path in proxy.requests if "/dagRuns" in path]
    assert run_calls == ["POST", "GET", "GET"]


def test_the_trigger_probe_gets_a_definite_answer_and_makes_no_run(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """probe_trigger POSTs for the DAG ``~`` that cannot exist: a definite 404, no run made."""
    client = client_for(airflow)
    assert client.probe_trigger()
    assert client.get_run("devstack_paused", PROBE_RUN_ID) is None


def test_the_trigger_probe_proves_nothing_while_triggers_fail(airflow3: AirflowServer) -> None:
    """With trigger POSTs failing 503 behind a fault proxy, or no server, the probe is False."""
    described = airflow3.describe()
    proxy = FaultProxy(airflow3.url)
    try:
        proxy.fail_triggers(503)
        client = AirflowClient(
            connection_for(
                proxy.url,
                username=described["username"],
                password=SecretStr(described["password"]),
            )
        )
        assert not client.probe_trigger()
        assert proxy.failed_posts == 1
        proxy.heal()
        assert client.probe_trigger()
    finally:
        proxy.close()
    assert not AirflowClient(connection_for(f"http://127.0.0.1:{free_port()}")).probe_trigger()


def test_params_violation_is_airflow_rejected_with_airflows_message(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """A conf that breaks the DAG's params gives airflow_rejected carrying Airflow's words."""
    with pytest.raises(AirflowError) as caught:
        client_for(airflow).trigger("devstack_params", new_run_id(), {"n": 1000})
    assert caught.value.code is ErrorCode.AIRFLOW_REJECTED
    assert caught.value.details["status"] == 400
    assert "Invalid input for param n" in caught.value.details["detail"]


def test_paused_dag_still_gets_a_queued_run_and_says_so(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """Both versions create the run (queued) for a paused DAG; the result flags dag_paused."""
    client = client_for(airflow)
    run_id = new_run_id()
    result = client.trigger("devstack_paused", run_id)
    assert (result.created, result.state, result.dag_paused) == (True, "queued", True)
    run = client.get_run("devstack_paused", run_id)
    assert run is not None and run.state == "queued"


def test_get_run_of_a_missing_run_is_none(airflow: AirflowServer, client_for: ClientFor) -> None:
    """get_run answers None when Airflow does not know the run."""
    assert client_for(airflow).get_run("devstack_plain", new_run_id("missing")) is None


def test_wrong_password_is_fatal_and_never_leaks(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """A wrong password raises ConfigError; it appears in no repr, exception or log line."""
    secret = "wrong-pw-0f9e8d7c"
    client = client_for(airflow, password=SecretStr(secret))
    with structlog.testing.capture_logs() as logs, pytest.raises(ConfigError) as caught:
        client.trigger("devstack_plain", new_run_id())
    seen = " ".join([repr(client), repr(client.transport), str(caught.value), repr(logs)])
    assert secret not in seen


def test_tokens_and_passwords_never_leak_on_success(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """After a successful trigger neither the password nor a JWT is in repr, results or logs."""
    client = client_for(airflow, api_version="auto")
    with structlog.testing.capture_logs() as logs:
        result = client.trigger("devstack_plain", new_run_id())
    seen = " ".join([repr(client), repr(client.transport), repr(result), repr(logs)])
    assert airflow.describe()["password"] not in seen
    assert "eyJ" not in seen


def test_static_bearer_token_works_on_airflow3(
    airflow3: AirflowServer, client_for: ClientFor
) -> None:
    """A static bearer token (Astronomer style) triggers on Airflow 3."""
    with airflow3.session() as session:
        header = str(session.headers["Authorization"])
    token = SecretStr(header.removeprefix("Bearer "))
    client = client_for(airflow3, username=None, password=None, token=token)
    assert client.trigger("devstack_plain", new_run_id()).created


def test_expired_jwt_is_refreshed_on_401(
    short_jwt_airflow3: AirflowServer, client_for: ClientFor
) -> None:
    """With 5 s tokens and no early refresh, a call after expiry gets 401, refreshes, succeeds."""
    client = client_for(short_jwt_airflow3, api_version="v2", jwt_refresh_margin=None)
    first = client.trigger("devstack_paused", new_run_id())
    assert first.attempts == 1
    auth = client.transport._auth
    assert auth is not None
    stale = f"Bearer {auth.token()}"  # type: ignore[attr-defined]
    wait_until(
        lambda: (
            client.transport._session.get(
                f"{short_jwt_airflow3.url}/api/v2/dags",
                headers={"Authorization": stale},
                timeout=10,
            ).status_code
            == 401
        ),
        timeout=30,
        interval=0.5,
        what="the token to expire",
    )
    later = client.trigger("devstack_paused", new_run_id())
    assert (later.created, later.attempts) == (True, 2)


def test_ping_and_factory_detect_the_version(airflow: AirflowServer) -> None:
    """make_airflow_client with api_version auto pings the right API and reports the version."""
    described = airflow.describe()
    api = make_airflow_client(
        Settings(
            airflow_url=airflow.url,
            airflow_username=described["username"],
            airflow_password=SecretStr(described["password"]),
        )
    )
    try:
        assert api.ping() == airflow.version
        assert api.run_url("d", "r:1+2").startswith(airflow.url)
    finally:
        api.close()


def test_trigger_latency_per_call(
    airflow: AirflowServer, client_for: ClientFor, request: pytest.FixtureRequest
) -> None:
    """Record the per-call latency of a trigger (paused DAG, warm client, paused flag cached)."""
    client = client_for(airflow)
    client.trigger("devstack_paused", new_run_id("warm"))
    timings = []
    for _ in range(15):
        began = time.perf_counter()
        client.trigger("devstack_paused", new_run_id("latency"))
        timings.append(time.perf_counter() - began)
    p50 = statistics.median(timings)
    # shown in the terminal summary by tests/airflow/conftest.py
    request.node.user_properties.append(
        (
            f"trigger latency Airflow {airflow.version}",
            f"p50 {p50 * 1000:.1f} ms, min {min(timings) * 1000:.1f} ms, "
            f"max {max(timings) * 1000:.1f} ms over {len(timings)} calls",
        )
    )
    assert p50 < 5.0


def test_one_client_serves_many_threads_with_one_token(
    airflow: AirflowServer, client_for: ClientFor
) -> None:
    """Eight threads triggering through one client all succeed; Airflow 3 logs in only once."""
    client = client_for(airflow, pool_size=8)
    run_ids = [new_run_id("thread") for _ in range(8)]
    results: list[TriggerResult] = []

    def trigger(run_id: str) -> None:
        results.append(client.trigger("devstack_paused", run_id))

    threads = [threading.Thread(target=trigger, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(r.dag_run_id for r in results) == sorted(run_ids)
    assert all(r.created for r in results)
    if airflow.major == "3":
        assert getattr(client.transport._auth, "tokens_fetched", None) == 1
