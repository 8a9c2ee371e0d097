"""Counting the HTTP requests sent to Airflow by purpose (consumer/airflow/calls.py).

Against the fault injector (every request it received is one counted, retries included)
and the real Airflow 3 and 2 (detection, login, trigger and tracking calls apart).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from consumer.airflow import AirflowClient, CallPurpose
from consumer.airflow.calls import count_nothing
from consumer.metrics import Metrics
from devstack.airflow import AirflowServer
from tests.airflow.conftest import FAST_RETRY, connection_for, new_run_id
from tests.faults.server import FaultInjector, Reply, run_body

DAG = "fault_dag"
RUNS = f"/api/v2/dags/{DAG}/dagRuns"
CALLS = "trigger_consumer_airflow_calls_total"


def calls(metrics: Metrics, purpose: CallPurpose) -> float:
    """The counter's value for ``purpose`` (0 when never bound)."""
    return metrics.registry.get_sample_value(CALLS, {"purpose": purpose.value}) or 0.0


@pytest.fixture
def metrics() -> Metrics:
    """A fresh registry for the counters of one test."""
    return Metrics()


@pytest.fixture
def clients(airflow: AirflowServer, metrics: Metrics) -> Iterator[dict[CallPurpose, AirflowClient]]:
    """A trigger and a tracking client of the real server, both counting into ``metrics``."""
    described = airflow.describe()
    connection = connection_for(
        airflow.url,
        api_version="auto",
        username=described["username"],
        password=SecretStr(described["password"]),
    )
    made = {
        purpose: AirflowClient(connection, purpose=purpose, count_calls=metrics.bind_airflow_calls)
        for purpose in (CallPurpose.TRIGGER, CallPurpose.TRACKING)
    }
    yield made
    for client in made.values():
        client.close()


def test_a_client_without_metrics_counts_nothing(faults: FaultInjector) -> None:
    """The default hooks do nothing: a client built without metrics (doctor) still works."""
    faults.script("GET", "/api/v2/version", Reply(200, {"version": "3.3.2"}))
    with AirflowClient(connection_for(faults.url, api_version="auto")) as client:
        assert client.ping() == "3.3.2"
    assert count_nothing(CallPurpose.TRIGGER) is count_nothing(CallPurpose.TRACKING)


def test_every_attempt_and_the_paused_look_up_count_as_trigger_calls(
    faults: FaultInjector, metrics: Metrics
) -> None:
    """Three 503s, a 200 and the paused-flag GET: five requests received, five counted."""
    run_id = new_run_id()
    faults.script(
        "POST", RUNS, Reply(503), Reply(503), Reply(503), Reply(200, run_body(DAG, run_id))
    )
    faults.script("GET", f"/api/v2/dags/{DAG}", Reply(200, {"dag_id": DAG, "is_paused": True}))
    options: dict[str, Any] = {"api_version": "v2", "token": SecretStr("t"), "retry": FAST_RETRY}
    with AirflowClient(
        connection_for(faults.url, **options), count_calls=metrics.bind_airflow_calls
    ) as client:
        result = client.trigger(DAG, run_id)

    assert (result.attempts, result.dag_paused) == (4, True)
    assert len(faults.seen()) == 5
    assert calls(metrics, CallPurpose.TRIGGER) == 5
    assert calls(metrics, CallPurpose.TRACKING) == 0
    assert calls(metrics, CallPurpose.DETECT) == 0  # the API version was given


def test_trigger_and_tracking_calls_are_counted_apart_on_real_airflow(
    airflow: AirflowServer, clients: dict[CallPurpose, AirflowClient], metrics: Metrics
) -> None:
    """Trigger, tracking, detection and login calls each count under their own purpose.

    Detection and login happen once per client: Airflow 3 answers the v2 probe and hands
    out a JWT; Airflow 2 is probed on v2, then v1, and takes basic auth.
    """
    run_id = new_run_id("calls")
    since = datetime.now(UTC) - timedelta(minutes=1)

    result = clients[CallPurpose.TRIGGER].trigger("devstack_paused", run_id)
    trigger_calls = calls(metrics, CallPurpose.TRIGGER)
    run = clients[CallPurpose.TRACKING].get_run("devstack_paused", run_id)
    assert calls(metrics, CallPurpose.TRACKING) == 1
    clients[CallPurpose.TRACKING].ended_runs({"devstack_paused"}, since)

    assert run is not None
    assert run.dag_run_id == run_id
    assert trigger_calls == result.attempts + 1  # the POST(s) and the paused-flag look-up
    assert calls(metrics, CallPurpose.TRIGGER) == trigger_calls  # tracking added none
    assert calls(metrics, CallPurpose.TRACKING) >= 2  # one list call per page of 100
    probes_per_client = 1 if airflow.major == "3" else 2
    assert calls(metrics, CallPurpose.DETECT) == 2 * probes_per_client
    assert calls(metrics, CallPurpose.LOGIN) == (2 if airflow.major == "3" else 0)
