"""Holds: when Airflow makes no runs or the store fails, requests wait, never fail (issue 18).

Airflow's faults come from a fault proxy (tests/faults/proxy.py) in front of the real
Airflow 3, so only the trigger POST fails while ``GET /version`` still answers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from devstack.airflow import AirflowServer
from devstack.procs import free_port
from tests.conftest import KafkaCluster, unique_name
from tests.faults.proxy import FaultProxy
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    committed,
    end_offsets,
    existing_runs,
    produce,
    read_all,
    replies_by_key,
    request,
    running,
)
from tests.waiting import wait_until

BUDGET = "3s"  # the worker's Airflow retry budget in these tests
DAG = "devstack_paused"


@pytest.fixture
def proxy(airflow3: AirflowServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the real Airflow 3."""
    injector = FaultProxy(airflow3.url)
    yield injector
    injector.close()


def readiness(port: int) -> tuple[int, list[str]]:
    """The worker's /readyz status code and reasons."""
    answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    return answer.status_code, answer.json().get("reasons", [])


def unready_because(port: int, words: str) -> bool:
    """Whether /readyz answers 503 with a reason containing ``words``."""
    status, reasons = readiness(port)
    return status == 503 and any(words in reason for reason in reasons)


def events_named(worker: WorkerProcess, name: str) -> list[dict[str, object]]:
    """The worker's log events called ``name``."""
    return [e for e in worker.events() if e.get("event") == name]


def assert_all_triggered_once(
    kafka: KafkaCluster, topics: Topics, keys: list[str], airflow: AirflowServer
) -> None:
    """One ``triggered`` reply per key, no dead letter, the runs exist, offsets committed."""
    replies = replies_by_key(read_all(kafka.bootstrap_servers, topics.replies, at_least=len(keys)))
    assert {k: [r["status"] for r in v] for k, v in replies.items()} == {
        key: ["triggered"] for key in keys
    }
    assert sum(end_offsets(kafka.bootstrap_servers, topics.dlq).values()) == 0
    assert existing_runs(airflow, DAG, keys) == set(keys)
    ends = {p: o for p, o in end_offsets(kafka.bootstrap_servers, topics.requests).items() if o}
    wait_until(
        lambda: committed(kafka.bootstrap_servers, topics.group, topics.requests) == ends,
        timeout=60,
        what="every request offset committed",
    )


def test_trigger_post_failing_past_the_budget_holds_then_triggers_all(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    proxy: FaultProxy,
    airflow3: AirflowServer,
) -> None:
    """Trigger POSTs failing past the budget while /version answers: held, then all triggered."""
    port = free_port()
    keys = [unique_name("held") for _ in range(4)]
    proxy.fail_triggers(503)
    worker = make_worker(airflow_url=proxy.url, airflow_retry_budget=BUDGET, http_port=str(port))
    with running(worker):
        produce(
            kafka.bootstrap_servers, topics.requests, [(k.encode(), request(k), []) for k in keys]
        )
        wait_until(
            lambda: unready_because(port, "no DAG run could be created"),
            timeout=60,
            what="/readyz unready while trigger POSTs fail",
        )
        held_at = time.monotonic()
        # three budgets more of failing POSTs: nothing may be answered meanwhile
        wait_until(lambda: time.monotonic() > held_at + 9, timeout=30, what="9 s of outage")
        assert unready_because(port, "no DAG run could be created")
        assert sum(end_offsets(kafka.bootstrap_servers, topics.replies).values()) == 0
        assert sum(end_offsets(kafka.bootstrap_servers, topics.dlq).values()) == 0
        assert proxy.failed_posts >= len(keys)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'trigger_consumer_held{reason="airflow"} 1.0' in metrics
        proxy.heal()
        assert_all_triggered_once(kafka, topics, keys, airflow3)
        wait_until(lambda: readiness(port)[0] == 200, timeout=60, what="/readyz ready again")


def test_lost_response_then_outage_past_the_budget_answers_triggered(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    proxy: FaultProxy,
    airflow3: AirflowServer,
) -> None:
    """A POST Airflow accepted whose answer was lost, then 503s past the budget: `triggered`."""
    key = unique_name("lost")
    proxy.drop_next_trigger_response(then_fail=503)
    worker = make_worker(airflow_url=proxy.url, airflow_retry_budget=BUDGET)
    with running(worker):
        produce(kafka.bootstrap_servers, topics.requests, [(key.encode(), request(key), [])])
        wait_until(
            lambda: events_named(worker, "airflow_unavailable_holding_requests"),
            timeout=60,
            what="the request held after its budget",
        )
        assert existing_runs(airflow3, DAG, [key]) == {key}  # the lost POST made the run
        proxy.heal()
        assert_all_triggered_once(kafka, topics, [key], airflow3)


def test_store_locked_by_another_connection_holds_then_answers_all(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    airflow3: AirflowServer,
    tmp_path: Path,
) -> None:
    """The store write-locked past its busy timeout: nothing answered or committed, then all."""
    port = free_port()
    warm, *keys = [unique_name("locked") for _ in range(4)]
    worker = make_worker(name="worker", http_port=str(port))
    with running(worker):
        produce(kafka.bootstrap_servers, topics.requests, [(warm.encode(), request(warm), [])])
        read_all(kafka.bootstrap_servers, topics.replies, at_least=1)
        before = wait_until(
            lambda: (
                (c := committed(kafka.bootstrap_servers, topics.group, topics.requests))
                and sum(c.values()) == 1
                and c
            ),
            timeout=60,
            what="the warm-up request committed",
        )
        lock = sqlite3.connect(tmp_path / "worker-store.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            produce(
                kafka.bootstrap_servers,
                topics.requests,
                [(k.encode(), request(k), []) for k in keys],
            )
            wait_until(
                lambda: unready_because(port, "store unavailable"),
                timeout=60,
                what="/readyz unready while the store is locked",
            )
            assert sum(end_offsets(kafka.bootstrap_servers, topics.replies).values()) == 1
            assert sum(end_offsets(kafka.bootstrap_servers, topics.dlq).values()) == 0
            assert committed(kafka.bootstrap_servers, topics.group, topics.requests) == before
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert_all_triggered_once(kafka, topics, [warm, *keys], airflow3)
        assert not events_named(worker, "internal_error")
        wait_until(lambda: readiness(port)[0] == 200, timeout=60, what="/readyz ready again")


def test_definite_refusal_of_the_held_request_lifts_the_hold(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    proxy: FaultProxy,
    airflow3: AirflowServer,
) -> None:
    """The one held request, once Airflow is back, is refused (404): the hold is lifted.

    Any definite answer of the trigger endpoint proves it serves; before, only a success
    lifted the hold, so a worker whose held request's DAG was removed stayed paused.
    """
    port = free_port()
    gone, after = unique_name("gone"), unique_name("after")
    proxy.fail_triggers(503)
    worker = make_worker(airflow_url=proxy.url, airflow_retry_budget=BUDGET, http_port=str(port))
    with running(worker):
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [(gone.encode(), request(gone, dag_id="devstack_removed_in_redeploy"), [])],
        )
        wait_until(
            lambda: unready_because(port, "no DAG run could be created"),
            timeout=60,
            what="/readyz unready while trigger POSTs fail",
        )
        proxy.heal()
        produce(kafka.bootstrap_servers, topics.requests, [(after.encode(), request(after), [])])
        replies = replies_by_key(read_all(kafka.bootstrap_servers, topics.replies, at_least=2))
        assert [r["status"] for r in replies[gone]] == ["error"]
        assert replies[gone][0]["error"]["code"] == "dag_not_found"
        assert [r["status"] for r in replies[after]] == ["triggered"]
        wait_until(lambda: readiness(port)[0] == 200, timeout=60, what="/readyz ready again")


def test_fanned_out_events_held_never_block_the_loop(
    kafka: KafkaCluster,
    topics: Topics,
    new_topic: Callable[..., str],
    make_worker: Callable[..., WorkerProcess],
    proxy: FaultProxy,
) -> None:
    """Events fanned out to three routes while held: the loop goes on and SIGTERM stops it.

    ``MAX_IN_FLIGHT`` counts records while the dispatcher's bound counted tasks, so a few
    fanned-out events filled it and ``submit`` blocked the loop thread: no poll, no stop.
    """
    events = new_topic(prefix="ev-held")
    routes = [
        {
            "name": f"r{n}",
            "topics": [events],
            "dag_id": DAG,
            "idempotency_key": "{id}",
        }
        for n in range(3)
    ]
    port = free_port()
    proxy.fail_triggers(503)
    worker = make_worker(
        airflow_url=proxy.url,
        airflow_retry_budget=BUDGET,
        http_port=str(port),
        max_in_flight="2",
        shutdown_timeout="5s",
        routes=json.dumps(routes),
    )
    worker.start()
    produce(
        kafka.bootstrap_servers,
        events,
        [(None, json.dumps({"id": unique_name("e")}).encode(), []) for _ in range(4)],
    )
    wait_until(
        lambda: events_named(worker, "airflow_unavailable_holding_requests"),
        timeout=60,
        what="the derived requests held",
    )
    # the loop still runs its iterations: it reports the hold (a blocked loop never would)
    wait_until(
        lambda: unready_because(port, "no DAG run could be created"),
        timeout=30,
        what="/readyz unready while trigger POSTs fail",
    )
    # and a loop blocked in submit never sees the stop flag: the worker would not exit
    assert worker.terminate(timeout=60) == 0, worker.tail()
