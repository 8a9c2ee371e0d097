"""Scenarios of several worker replicas in one group sharing the PostgreSQL store (issue 17)."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable

import psycopg
import pytest

from consumer.run_id import run_id_for
from consumer.store.postgres_schema import TABLE
from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster, unique_name
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
)
from tests.waiting import wait_until

DAG = "devstack_paused"  # runs are created but never executed: cheap for the scheduler
SLEEPS = "devstack_sleeps"  # runs that stay `running` for `seconds`
PARTITIONS = 12
REPLICAS = 3


@pytest.fixture
def topics(new_topic: Callable[..., str]) -> Topics:
    """A 12-partition request topic (replaces the 3-partition one), replies, DLQ, a group."""
    return Topics(
        requests=new_topic(partitions=PARTITIONS, prefix="requests"),
        replies=new_topic(partitions=1, prefix="replies"),
        dlq=new_topic(partitions=1, prefix="dlq"),
        group=unique_name("group"),
    )


def _all_committed(kafka: KafkaCluster, topics: Topics) -> bool:
    ends = {
        p: end for p, end in end_offsets(kafka.bootstrap_servers, topics.requests).items() if end
    }
    done = committed(kafka.bootstrap_servers, topics.group, topics.requests)
    return {p: done.get(p) for p in ends} == ends  # partitions never written have no commit


def test_replicas_killed_and_started_answer_every_original_request_triggered(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_database: str,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Three replicas on one store, SIGKILLed and restarted: one run per key, all `triggered`."""
    keys = [unique_name("fleet") for _ in range(300)]
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, DAG), []) for key in keys],
    )
    replicas = [make_worker(name=f"r{index}", store_url=new_database) for index in range(REPLICAS)]
    chance = random.Random(20261202)  # noqa: S311 -- test timing, not cryptography
    kills = 0
    try:
        for replica in replicas:
            replica.launch()
        while kills < 4 and not _all_committed(kafka, topics):
            seen = sum(end_offsets(kafka.bootstrap_servers, topics.replies).values())
            read_all(
                kafka.bootstrap_servers,
                topics.replies,
                at_least=seen + chance.randint(10, 40),
                timeout=120,
            )
            victim = replicas[kills % REPLICAS]
            victim.kill()
            kills += 1
            victim.launch()
        wait_until(lambda: _all_committed(kafka, topics), timeout=240, what="offsets committed")
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(keys))
    finally:
        for replica in replicas:
            replica.close()

    assert kills >= 2
    by_key = replies_by_key(replies)
    assert set(by_key) == set(keys)  # every request answered
    # one request per key: every answer, re-deliveries included, says it made the run
    statuses = {r["status"] for group in by_key.values() for r in group}
    assert statuses == {"triggered"}, {k: [r["status"] for r in g] for k, g in by_key.items()}
    assert existing_runs(airflow3, DAG, set(keys)) == set(keys)


def test_key_reused_on_two_partitions_is_rejected_and_triggers_nothing(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_database: str,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Same key, other conf or other dag_id, via other partitions and replicas: one run, reused."""
    conf_key, dag_key = unique_name("reuse-conf"), unique_name("reuse-dag")
    replicas = [make_worker(name=f"r{index}", store_url=new_database) for index in range(2)]
    try:
        for replica in replicas:
            replica.launch()
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [
                (b"a", request(conf_key, DAG, conf={"n": 1}), []),
                (b"a", request(dag_key, DAG), []),
            ],
        )
        read_all(kafka.bootstrap_servers, topics.replies, at_least=2, timeout=120)
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [
                (b"zz-other-partition", request(conf_key, DAG, conf={"n": 2}), []),
                (b"zz-other-partition", request(dag_key, "devstack_plain"), []),
            ],
        )
        wait_until(lambda: _all_committed(kafka, topics), timeout=180, what="offsets committed")
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=4)
    finally:
        for replica in replicas:
            replica.close()

    by_key = replies_by_key(replies)
    for key in (conf_key, dag_key):
        answers = [(r["status"], (r.get("error") or {}).get("code")) for r in by_key[key]]
        assert answers == [("triggered", None), ("rejected", "idempotency_key_reused")]
    assert existing_runs(airflow3, DAG, {conf_key, dag_key}) == {conf_key, dag_key}
    assert existing_runs(airflow3, "devstack_plain", {dag_key}) == set()


def _lease_owner(database: str, key: str) -> str | None:
    """Which tracker holds the lease on ``key``'s tracked run (None: nobody)."""
    with psycopg.connect(database) as connection:
        row = connection.execute(
            f"SELECT lease_owner FROM {TABLE} WHERE key = %s",  # noqa: S608 -- a constant
            (key,),
        ).fetchone()
    return row[0] if row else None


def _run_state(airflow: AirflowServer, key: str) -> str:
    base = f"{airflow.url}/api/{airflow.api_version}/dags/{SLEEPS}/dagRuns/{run_id_for(key)}"
    answer = airflow.session().get(base, timeout=30)
    answer.raise_for_status()
    state: str = answer.json()["state"]
    return state


def test_tracked_run_of_a_killed_replica_completes_once_from_the_other(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_database: str,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """The replica that triggered and watches a tracked run is SIGKILLed: one `completed` reply."""
    key = unique_name("tracked-takeover")
    first, second = (
        make_worker(name=name, store_url=new_database, track_poll_interval="1s")
        for name in ("first", "second")
    )
    try:
        first.start()
        assert first.process is not None
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [(key.encode(), request(key, SLEEPS, conf={"seconds": 45}, track=True), [])],
        )
        (triggered,) = read_all(kafka.bootstrap_servers, topics.replies, at_least=1)
        assert json.loads(triggered.value)["status"] == "triggered"
        owner = wait_until(
            lambda: _lease_owner(new_database, key), timeout=60, what="the run leased"
        )
        assert owner.startswith(f"{socket.gethostname()}-{first.process.pid}-")
        second.start()
        assert second.process is not None
        assert _run_state(airflow3, key) not in {"success", "failed"}
        first.kill()  # holds the lease; never releases it
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=2, timeout=240)
        assert _run_state(airflow3, key) == "success"
        # the lease taken over is ended by mark_completed; then stop cleanly and count
        wait_until(lambda: _lease_owner(new_database, key) is None, timeout=60, what="lease ended")
        assert second.terminate() == 0
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=2)
    finally:
        first.close()
        second.close()

    answers = [json.loads(record.value) for record in replies]
    assert [a["status"] for a in answers] == ["triggered", "completed"]
    assert answers[1]["run_state"] == "success"
    assert answers[0]["worker"].startswith(f"{socket.gethostname()}-{first.process.pid}/")
    assert answers[1]["worker"].startswith(f"{socket.gethostname()}-{second.process.pid}/")
