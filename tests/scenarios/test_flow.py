"""Flow control end to end (issue 30): per-DAG limits, durable deferral and ``not_before``.

``devstack_limited`` is paused and used by these tests alone, so its queued runs are exactly
the ones they made: a limit on queued runs is observable at every sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests

from consumer.run_id import run_id_for
from devstack.airflow import AirflowServer
from devstack.procs import free_port
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    all_committed,
    existing_runs,
    produce,
    read_all,
    replies_by_key,
    request,
    running,
)
from tests.waiting import wait_until

LIMITED = "devstack_limited"


def _api(server: AirflowServer, path: str) -> str:
    return f"{server.url}/api/{server.api_version}{path}"


def queued_runs(server: AirflowServer, dag_id: str = LIMITED) -> int:
    """Airflow's count of the DAG's queued runs."""
    response = server.session().get(
        _api(server, f"/dags/{dag_id}/dagRuns"), params={"state": "queued", "limit": 1}, timeout=30
    )
    assert response.status_code == 200, response.text
    total: int = response.json()["total_entries"]
    return total


def set_paused(server: AirflowServer, paused: bool, dag_id: str = LIMITED) -> None:
    """Pause or unpause the DAG."""
    response = server.session().patch(
        _api(server, f"/dags/{dag_id}"), json={"is_paused": paused}, timeout=30
    )
    assert response.status_code == 200, response.text


def delete_runs(server: AirflowServer, dag_id: str = LIMITED) -> None:
    """Delete every run of the DAG: a clean slate for a limit on its queued runs."""
    session = server.session()
    while True:
        listed = session.get(
            _api(server, f"/dags/{dag_id}/dagRuns"), params={"limit": 100}, timeout=30
        )
        assert listed.status_code == 200, listed.text
        runs = listed.json()["dag_runs"]
        if not runs:
            return
        for run in runs:
            url = _api(server, f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}")
            if session.delete(url, timeout=30).status_code == 409:  # running: ended first
                session.patch(url, json={"state": "failed"}, timeout=30)
                deleted = session.delete(url, timeout=30)
                assert deleted.status_code in {204, 404}, deleted.text


@pytest.fixture
def limited_dag(airflow3: AirflowServer, airflow2: AirflowServer) -> Iterator[None]:
    """``devstack_limited`` paused and without runs on both Airflows, before and after."""
    for server in (airflow3, airflow2):
        set_paused(server, True)
        delete_runs(server)
    yield
    for server in (airflow3, airflow2):
        set_paused(server, True)
        delete_runs(server)


def _limits(**limit: object) -> str:
    return json.dumps([{"dags": [LIMITED], **limit}])


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.usefixtures("limited_dag")
def test_a_limited_dag_stays_at_its_limit_and_loses_nothing(
    request: pytest.FixtureRequest,
    store: str,
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Limit 3 on a paused DAG: 3 runs, never more, and nothing lost or doubled.

    The rest is deferred with offsets committed; the other DAG is answered meanwhile; a
    SIGKILL with requests deferred loses and doubles none; once the DAG runs again every
    request is triggered once (a duplicate answered duplicate). Airflow 3 with SQLite,
    Airflow 2 with PostgreSQL.
    """
    server: AirflowServer = request.getfixturevalue("airflow3" if store == "sqlite" else "airflow2")
    options = {"dag_limits": _limits(max_queued_runs=3)}
    if store == "postgres":
        options["store_url"] = request.getfixturevalue("new_database")
    else:  # the restarted worker finds what its killed predecessor deferred
        tmp_path: Path = request.getfixturevalue("tmp_path")
        options["store_url"] = f"sqlite:///{tmp_path / 'store.db'}"
    keys = [unique_name(f"flood{i}") for i in range(8)]
    others = [unique_name(f"other{i}") for i in range(3)]
    cases = [(k.encode(), request_of(k, LIMITED), []) for k in keys]
    cases.append((keys[0].encode(), request_of(keys[0], LIMITED), []))  # its duplicate
    cases += [(k.encode(), request_of(k, "devstack_plain"), []) for k in others]
    produce(kafka.bootstrap_servers, topics.requests, cases)

    def triggered(records: list[Any]) -> set[str]:
        by_key = replies_by_key(records)
        return {k for k, rs in by_key.items() if any(r["status"] == "triggered" for r in rs)}

    def answered(records: list[Any]) -> bool:
        done = triggered(records)
        return set(others) <= done and len(done & set(keys)) == 3

    first = make_worker(airflow=server, name="first", **options)
    with running(first):
        replies = wait_until(
            lambda: (
                (got := read_all(kafka.bootstrap_servers, topics.replies, at_least=6))
                and answered(got)
                and got
            ),
            timeout=120,
            what="the other DAG's replies and three of the limited DAG's",
        )
        wait_until(
            lambda: all_committed(kafka.bootstrap_servers, topics), timeout=60, what="commits"
        )
        samples = [queued_runs(server) for _ in range(5)]
        first.kill()  # SIGKILL with requests deferred

    assert samples == [3] * 5  # the limit: three queued runs, never more
    assert len(triggered(replies) & set(keys)) == 3  # and no more made

    set_paused(server, False)  # runs leave the queue: the rest goes, three at a time
    second = make_worker(airflow=server, name="second", **options)
    with running(second):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(cases))
    by_key = replies_by_key(replies)
    assert len(replies) == len(cases)  # one reply per request: none lost, none doubled
    assert sorted(r["status"] for r in by_key[keys[0]]) == ["duplicate", "triggered"]
    assert all([r["status"] for r in by_key[k]] == ["triggered"] for k in keys[1:])
    assert existing_runs(server, LIMITED, keys) == set(keys)


def request_of(key: str, dag_id: str, **fields: object) -> bytes:
    """A request of ``key`` for ``dag_id``."""
    return request(key, dag_id=dag_id, **fields)


@pytest.mark.usefixtures("limited_dag")
def test_not_before_makes_the_run_then_and_not_earlier(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """``not_before``: the run and first reply come at or after it.

    One in the past goes at once; one more than MAX_NOT_BEFORE ahead is refused
    ``not_before_too_far``.
    """
    later, past, far = (unique_name(k) for k in ("later", "past", "far"))
    due = datetime.now(UTC) + timedelta(seconds=20)
    cases = [
        (later.encode(), request(later, dag_id="devstack_plain", not_before=due.isoformat()), []),
        (
            past.encode(),
            request(past, dag_id="devstack_plain", not_before="2020-01-01T00:00:00Z"),
            [],
        ),
        (
            far.encode(),
            request(far, dag_id="devstack_plain", not_before="2999-01-01T00:00:00Z"),
            [],
        ),
    ]
    produce(kafka.bootstrap_servers, topics.requests, cases)
    with running(make_worker()):
        early = read_all(kafka.bootstrap_servers, topics.replies, at_least=2)
        assert time.time() < due.timestamp(), "the test machine was too slow to see the wait"
        assert {r["idempotency_key"] for r in map(_body, early)} == {past, far}
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=3)
    by_key = replies_by_key(replies)
    assert [r["status"] for r in by_key[past]] == ["triggered"]
    assert by_key[far][0]["error"]["code"] == "not_before_too_far"
    (answer,) = by_key[later]
    assert answer["status"] == "triggered"
    assert datetime.fromisoformat(answer["processed_at"]) >= due
    run = airflow3.session().get(
        _api(airflow3, f"/dags/devstack_plain/dagRuns/{run_id_for(later)}"), timeout=30
    )
    assert datetime.fromisoformat(run.json()["run_after"]) >= due


def _body(record: object) -> dict[str, object]:
    value: bytes = record.value  # type: ignore[attr-defined]
    parsed: dict[str, object] = json.loads(value)
    return parsed


@pytest.mark.usefixtures("limited_dag")
def test_a_rate_holds_across_two_replicas_of_one_store(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_database: str,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """``rate = "20/min"``: one run each 3 s, whichever of two replicas lets it go."""
    keys = [unique_name(f"paced{i}") for i in range(5)]
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(k.encode(), request(k, LIMITED), []) for k in keys],
    )
    options = {"dag_limits": _limits(rate="20/min"), "store_url": new_database}
    replicas = [make_worker(name=f"r{index}", **options) for index in range(2)]
    with running(replicas[0]), running(replicas[1]):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(keys), timeout=120)
    assert sorted(_body(r)["idempotency_key"] for r in replies) == sorted(keys)
    session = airflow3.session()
    made = sorted(
        datetime.fromisoformat(
            session.get(
                _api(airflow3, f"/dags/{LIMITED}/dagRuns/{run_id_for(k)}"), timeout=30
            ).json()["queued_at"]
        )
        for k in keys
    )
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(made)]
    # slots are 3 s apart on the database clock; a POST's own latency moves a run by less than 1 s
    assert min(gaps) > 2.0, gaps


@pytest.mark.usefixtures("limited_dag")
def test_max_deferred_stops_fetching_and_nothing_is_dropped(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """MAX_DEFERRED 3 reached: fetching stops, /readyz says so; once the DAG runs, all go."""
    first = [unique_name(f"held{i}") for i in range(6)]
    later = [unique_name(f"later{i}") for i in range(4)]
    port = free_port()
    worker = make_worker(
        dag_limits=_limits(max_queued_runs=1), max_deferred="3", http_port=str(port)
    )
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(k.encode(), request(k, LIMITED), []) for k in first],
    )
    with running(worker):
        readyz = f"http://127.0.0.1:{port}/readyz"
        wait_until(
            lambda: "deferral full" in requests.get(readyz, timeout=10).text,
            timeout=90,
            what="/readyz saying the deferral is full",
        )
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [(k.encode(), request(k, LIMITED), []) for k in later],
        )
        shown = f'trigger_consumer_deferred{{dag="{LIMITED}",reason="limit"}} 5.0'
        wait_until(
            lambda: (
                (text := requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
                and "trigger_consumer_paused 1.0" in text
                and shown in text
            ),
            timeout=30,
            what="fetching paused with five requests deferred",
        )
        set_paused(airflow3, False)
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=10, timeout=180)
        wait_until(
            lambda: requests.get(readyz, timeout=10).status_code == 200, timeout=60, what="ready"
        )
    assert sorted(_body(r)["idempotency_key"] for r in replies) == sorted(first + later)
    assert all(_body(r)["status"] == "triggered" for r in replies)
