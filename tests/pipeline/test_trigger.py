"""Tests of consumer/pipeline/trigger.py: one request's trigger across retry budgets and holds.

Against the real Airflow 3, with a fault proxy (tests/faults/proxy.py) failing chosen calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from consumer.airflow import AirflowClient, RetryPolicy, TriggerResult
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import FixedLimit
from consumer.contract import TriggerRequest
from consumer.errors import StoppingError
from consumer.pipeline.trigger import trigger
from devstack.airflow import AirflowServer
from tests.airflow.conftest import connection_for, new_run_id
from tests.faults.proxy import FaultProxy
from tests.waiting import wait_until

# one retry per client call: a budget runs out after two failed calls
TINY_BUDGET = RetryPolicy(base=0.01, max_delay=0.01, jitter=False, max_attempts=1)


@pytest.fixture
def proxy(airflow3: AirflowServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the real Airflow 3."""
    injector = FaultProxy(airflow3.url)
    yield injector
    injector.close()


def client_through(proxy: FaultProxy, airflow: AirflowServer) -> AirflowClient:
    """A client of ``airflow`` through ``proxy``, with a budget of one failed call."""
    described = airflow.describe()
    return AirflowClient(
        connection_for(
            proxy.url,
            username=described["username"],
            password=SecretStr(described["password"]),
            retry=TINY_BUDGET,
        )
    )


def test_a_look_up_budget_spent_after_409_does_not_make_the_run_ours(
    airflow3: AirflowServer, proxy: FaultProxy
) -> None:
    """409, then the run's GET fails (504) past the budget; after the hold, the run is not ours.

    The held request's later 409 is read as this request's run only when one of its POSTs
    may have reached Airflow; a failed GET never made a run.
    """
    run_id = new_run_id("other")
    described = airflow3.describe()
    AirflowClient(
        connection_for(
            airflow3.url,
            username=described["username"],
            password=SecretStr(described["password"]),
        )
    ).trigger("devstack_paused", run_id)  # another request made the run
    proxy.fail_run_reads(504, times=1000)
    client = client_through(proxy, airflow3)
    gate = AirflowGate(threading.Event())
    outcome: dict[str, Any] = {}

    def call() -> None:
        request = TriggerRequest(idempotency_key="k", dag_id="devstack_paused")
        outcome["result"] = trigger(request, run_id, client, gate, FixedLimit(1))

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    wait_until(lambda: not gate.available, timeout=30, what="the request held")
    proxy.heal()
    caller.join(timeout=60)
    result: TriggerResult = outcome["result"]
    assert not result.created
    assert not result.may_have_reached
    assert result.dag_run_id == run_id


def test_a_request_revoked_while_held_stops_calling_airflow(
    airflow3: AirflowServer, proxy: FaultProxy
) -> None:
    """Held through a spent budget, then revoked: it stops (StoppingError), no further POST.

    Before, a held request went on retrying for its old owner while the new owner worked on
    the same record, and the two could disagree on who made the run (nemesis, seed 101).
    """
    proxy.fail_triggers(503)
    client = client_through(proxy, airflow3)
    gate = AirflowGate(threading.Event())
    revoked = threading.Event()
    outcome: dict[str, Any] = {}

    def call() -> None:
        request = TriggerRequest(idempotency_key="k", dag_id="devstack_paused")
        try:
            trigger(
                request,
                new_run_id("held"),
                client,
                gate,
                FixedLimit(1),
                owned=lambda: not revoked.is_set(),
            )
        except StoppingError as exc:
            outcome["stopped"] = exc

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    wait_until(lambda: not gate.available, timeout=30, what="the request held")
    revoked.set()
    caller.join(timeout=60)
    assert isinstance(outcome.get("stopped"), StoppingError)
    posts = proxy.trigger_posts
    proxy.heal()
    assert proxy.trigger_posts == posts
