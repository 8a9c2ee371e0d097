"""The client's contract, run through each managed service's auth: one function per check."""

from __future__ import annotations

import uuid

import pytest

from consumer.airflow import AirflowClient
from consumer.airflow.clearing import RunClearing
from consumer.errors import AirflowError, ErrorCode
from tests.waiting import wait_until


def check_trigger_contract(client: AirflowClient) -> str:
    """Trigger, duplicate, read, unknown DAG (404) and bad params (400); returns the run id."""
    run_id = f"kafka__{uuid.uuid4().hex}"
    made = client.trigger("devstack_plain", run_id, conf={"n": 1})
    again = client.trigger("devstack_plain", run_id, conf={"n": 1})
    read = client.get_run("devstack_plain", run_id)
    assert (made.created, again.created) == (True, False)
    assert read is not None and read.dag_run_id == run_id
    assert client.get_run("devstack_plain", run_id + "-absent") is None
    with pytest.raises(AirflowError) as unknown:
        client.trigger("devstack_absent_dag", f"kafka__{uuid.uuid4().hex}")
    with pytest.raises(AirflowError) as bad_params:
        client.trigger("devstack_params", f"kafka__{uuid.uuid4().hex}", conf={"n": "x"})
    assert unknown.value.code is ErrorCode.DAG_NOT_FOUND
    assert bad_params.value.code is ErrorCode.AIRFLOW_REJECTED
    return run_id


def check_rerun(client: AirflowClient) -> None:
    """A failed run of ``devstack_flaky`` is cleared once and then succeeds."""
    run_id = f"kafka__{uuid.uuid4().hex}"
    client.trigger("devstack_flaky", run_id)
    wait_until(
        lambda: _state(client, "devstack_flaky", run_id) == "failed",
        timeout=120,
        interval=1,
        what="the flaky run failing",
    )
    clearing = RunClearing(client)
    before = clearing.clock("devstack_flaky", run_id)
    after = clearing.ensure_cleared(
        "devstack_flaky", run_id, before.clock, only_failed=True, owned=lambda: True
    )
    assert after.cleared
    wait_until(
        lambda: _state(client, "devstack_flaky", run_id) == "success",
        timeout=120,
        interval=1,
        what="the cleared run succeeding",
    )


def _state(client: AirflowClient, dag_id: str, run_id: str) -> str | None:
    run = client.get_run(dag_id, run_id)
    return None if run is None else run.state
