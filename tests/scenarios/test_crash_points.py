"""Crashes at named points of the delivery path (test-only fault hook): one run, a reply."""

from __future__ import annotations

import json
from collections.abc import Callable

from consumer.crash import CRASH_EXIT
from consumer.settings import Settings
from consumer.store import EntryStatus, open_store
from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    committed,
    existing_runs,
    produce,
    read_all,
    request,
    running,
)
from tests.waiting import wait_until

DAG = "devstack_paused"
RETENTION = Settings.model_fields["dedup_retention"].default  # the worker's own


def _crash_then_recover(
    point: str,
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> tuple[str, list[dict[str, object]], WorkerProcess]:
    """One request; a worker armed to crash at ``point``; then a plain worker finishes it."""
    key = unique_name(point.replace("_", "-"))
    produce(kafka.bootstrap_servers, topics.requests, [(key.encode(), request(key, DAG), [])])
    (sent,) = read_all(kafka.bootstrap_servers, topics.requests, at_least=1)
    crashing = make_worker(test_crash_at=point)
    crashing.start()
    assert crashing.wait(timeout=120) == CRASH_EXIT
    assert committed(kafka.bootstrap_servers, topics.group, topics.requests) == {}
    recovering = make_worker()  # same group and store, no fault armed
    with running(recovering):
        wait_until(
            lambda: (
                committed(kafka.bootstrap_servers, topics.group, topics.requests)
                == {sent.partition: 1}
            ),
            timeout=120,
            what="the request committed after the restart",
        )
    replies = [
        json.loads(r.value) for r in read_all(kafka.bootstrap_servers, topics.replies, at_least=1)
    ]
    return key, replies, recovering


def test_crash_after_trigger_before_store_write(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Killed after Airflow made the run, before the store knew: the restart says `triggered`."""
    key, replies, worker = _crash_then_recover("after_trigger", kafka, topics, make_worker)
    assert [r["status"] for r in replies] == ["triggered"]  # the pending mark proves it was ours
    assert existing_runs(airflow3, DAG, [key]) == {key}
    store = open_store(worker.env["TRIGGER_CONSUMER_STORE_URL"], RETENTION)
    try:
        entry = store.get(key)
    finally:
        store.close()
    assert entry is not None
    assert entry.status is EntryStatus.TRIGGERED


def test_crash_after_reply_before_commit(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Killed after the reply was acked, before the commit: re-delivered, answered, one run.

    The re-delivered record is the request that made the run, so it is answered
    ``triggered`` again (spec §3), from the store.
    """
    key, replies, _ = _crash_then_recover("after_reply", kafka, topics, make_worker)
    assert [r["status"] for r in replies] == ["triggered", "triggered"]
    assert replies[1]["attempts"] == 0  # the re-delivery was answered from the store
    assert existing_runs(airflow3, DAG, [key]) == {key}


def _committed_count(kafka: KafkaCluster, topics: Topics) -> int:
    """How many requests the group committed (offsets start at 0 on fresh topics)."""
    return sum(committed(kafka.bootstrap_servers, topics.group, topics.requests).values())


def test_crash_after_reply_answered_without_airflow(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Killed after the acked reply of an answer made without Airflow, before the commit.

    Duplicates and rejections are answered on the loop's thread: the restart answers both
    again the same way, and the key still has one run.
    """
    key = unique_name("loop")
    produce(kafka.bootstrap_servers, topics.requests, [(key.encode(), request(key, DAG), [])])
    with running(make_worker()):
        wait_until(
            lambda: _committed_count(kafka, topics) == 1,
            timeout=120,
            what="the first request committed",
        )
    # the same request again (a duplicate) and a broken one (a rejection), same partition
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, DAG), []), (key.encode(), b'{"idempotency_key": ', [])],
    )
    crashing = make_worker(test_crash_at="after_reply")
    crashing.start()
    assert crashing.wait(timeout=120) == CRASH_EXIT
    assert _committed_count(kafka, topics) == 1
    with running(make_worker()):
        wait_until(
            lambda: _committed_count(kafka, topics) == 3,
            timeout=120,
            what="both later requests committed after the restart",
        )
    replies = [
        json.loads(r.value) for r in read_all(kafka.bootstrap_servers, topics.replies, at_least=3)
    ]
    statuses = [r["status"] for r in replies]  # one reply partition (one key): in order
    assert statuses[0] == "triggered"
    # the crashed worker's acked replies (one or both: they may share a produce batch) ...
    before_crash = statuses[1:-2]
    assert 1 <= len(before_crash) <= 2
    assert set(before_crash) <= {"duplicate", "rejected"}
    # ... then the restart answered both again, neither having been committed
    assert sorted(statuses[-2:]) == ["duplicate", "rejected"]
    assert all(r["attempts"] == 0 for r in replies[1:])  # none of them called Airflow
    assert existing_runs(airflow3, DAG, [key]) == {key}
