"""Nothing lost, nothing doubled: batches, crashes, SIGTERM, rebalances, credentials, outages."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from functools import partial

from devstack import Stack
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
    running,
)
from tests.waiting import wait_until

DAG = "devstack_paused"  # runs are created but never executed: cheap for the scheduler


def _runs(server: AirflowServer, keys: set[str]) -> set[str]:
    """The keys among ``keys`` whose derived run exists in Airflow."""
    return existing_runs(server, DAG, keys)


def _replies_written(kafka: KafkaCluster, topics: Topics) -> int:
    return sum(end_offsets(kafka.bootstrap_servers, topics.replies).values())


def _killable(kafka: KafkaCluster, topics: Topics, replies: int) -> bool:
    """``replies`` replies are written, or the stream is done (fewer were left to answer)."""
    return _replies_written(kafka, topics) >= replies or _all_committed(kafka, topics)


def _all_committed(kafka: KafkaCluster, topics: Topics) -> bool:
    ends = end_offsets(kafka.bootstrap_servers, topics.requests)
    return committed(kafka.bootstrap_servers, topics.group, topics.requests) == ends


def test_mixed_batch_one_run_per_key_one_reply_per_request(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """300 mixed requests on 3 partitions: one reply each, one run per valid key, all committed."""
    new = [unique_name("mix") for _ in range(150)]
    batch: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    batch += [(key.encode(), request(key, DAG), []) for key in new]
    batch += [(key.encode(), request(key, DAG), []) for key in new[:60]]  # replays
    batch += [(key.encode(), request(key, DAG, note="changed"), []) for key in new[60:90]]
    batch += [(f"bad{i}".encode(), b'{"idempotency_key": ', []) for i in range(30)]
    batch += [
        (key.encode(), request(key, "devstack_missing"), [])
        for key in (unique_name("missing") for _ in range(30))
    ]
    produce(kafka.bootstrap_servers, topics.requests, batch)

    with running(make_worker()):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(batch))
        wait_until(lambda: _all_committed(kafka, topics), timeout=60, what="offsets committed")

    assert len(replies) == len(batch)
    statuses = [json.loads(r.value)["status"] for r in replies]
    assert statuses.count("triggered") == 150
    assert statuses.count("duplicate") == 60
    assert statuses.count("rejected") == 60  # 30 reused keys + 30 broken JSON
    assert statuses.count("error") == 30  # dag_not_found
    assert _runs(airflow3, set(new)) == set(new)


def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """A worker killed with SIGKILL 8 times mid-stream and restarted: every key one run, a reply."""
    keys = [unique_name("crash") for _ in range(240)]
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, DAG), []) for key in keys],
    )
    worker = make_worker()
    chance = random.Random(20261124)  # noqa: S311 -- test timing, not cryptography
    kills = 0
    try:
        while kills < 8 and not _all_committed(kafka, topics):
            worker.start()
            target = _replies_written(kafka, topics) + chance.randint(1, 30)
            wait_until(
                partial(_killable, kafka, topics, target),
                timeout=120,
                what=f"{target} replies or every offset committed",
            )
            worker.kill()
            kills += 1
        worker.start()
        wait_until(lambda: _all_committed(kafka, topics), timeout=180, what="offsets committed")
        # every committed request had its reply acked first; replays add duplicates
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(keys))
    finally:
        worker.close()

    assert kills >= 4  # the stream really was interrupted several times
    by_key = replies_by_key(replies)
    assert set(by_key) == set(keys)  # at least one reply per request
    assert {r["status"] for group in by_key.values() for r in group} <= {"triggered", "duplicate"}
    assert _runs(airflow3, set(keys)) == set(keys)  # one deterministic run id per key


def test_sigterm_drains_and_commits_only_finished_work(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """SIGTERM mid-stream: exit 0 within the bound; every committed offset has its reply."""
    keys = [unique_name("term") for _ in range(150)]
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, DAG), []) for key in keys],
    )
    worker = make_worker()
    with running(worker):
        read_all(kafka.bootstrap_servers, topics.replies, at_least=20)
        assert worker.terminate(timeout=40) == 0

    replies = [
        json.loads(r.value) for r in read_all(kafka.bootstrap_servers, topics.replies, at_least=20)
    ]
    answered = {(r["source"]["partition"], r["source"]["offset"]) for r in replies}
    for partition, offset in committed(
        kafka.bootstrap_servers, topics.group, topics.requests
    ).items():
        assert all((partition, earlier) in answered for earlier in range(offset))
    assert any(e.get("event") == "worker_stopped" for e in worker.events())


def test_two_workers_share_the_group_and_one_finishes_alone(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Two workers split the partitions; one is killed; the other takes over and finishes."""
    first, second = make_worker(name="a"), make_worker(name="b")
    with running(first), running(second):
        wait_until(
            lambda: all(
                any(e.get("event") == "partitions_assigned" and e["partitions"] for e in w.events())
                for w in (first, second)
            ),
            timeout=60,
            what="both workers owning partitions",
        )
        keys = [unique_name("pair") for _ in range(150)]
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [(key.encode(), request(key, DAG), []) for key in keys],
        )
        read_all(kafka.bootstrap_servers, topics.replies, at_least=30)
        first.kill()
        wait_until(lambda: _all_committed(kafka, topics), timeout=180, what="offsets committed")
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(keys))
    assert set(replies_by_key(replies)) == set(keys)
    assert _runs(airflow3, set(keys)) == set(keys)


def test_wrong_airflow_password_stops_without_dead_lettering(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Bad credentials: the worker exits non-zero; no reply, no DLQ record, no commit."""
    keys = [unique_name("auth") for _ in range(20)]
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, DAG), []) for key in keys],
    )
    worker = make_worker(password="not-the-password")
    worker.start()
    assert worker.wait(timeout=90) != 0
    assert any(e.get("event") == "configuration_error_stopping" for e in worker.events())
    assert committed(kafka.bootstrap_servers, topics.group, topics.requests) == {}
    assert read_all(kafka.bootstrap_servers, topics.dlq, at_least=0, timeout=2) == []
    assert read_all(kafka.bootstrap_servers, topics.replies, at_least=0, timeout=2) == []


def test_airflow_outage_holds_requests_and_fails_none(
    kafka: KafkaCluster,
    stack: Stack,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """The API server stops mid-stream: no error reply, and every request is triggered after."""
    before = [unique_name("pre") for _ in range(20)]
    during = [unique_name("outage") for _ in range(40)]
    worker = make_worker(airflow_retry_budget="5s")
    with running(worker):
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [(key.encode(), request(key, DAG), []) for key in before],
        )
        read_all(kafka.bootstrap_servers, topics.replies, at_least=len(before))
        stack.stop_api("3")
        try:
            produce(
                kafka.bootstrap_servers,
                topics.requests,
                [(key.encode(), request(key, DAG), []) for key in during],
            )
            wait_until(
                lambda: any(
                    e.get("event") == "airflow_unavailable_holding_requests"
                    for e in worker.events()
                ),
                timeout=120,
                what="the worker noticing the outage",
            )
        finally:
            stack.start_api("3")
        replies = read_all(
            kafka.bootstrap_servers, topics.replies, at_least=len(before) + len(during)
        )
    statuses = {json.loads(r.value)["status"] for r in replies}
    assert statuses == {"triggered"}
    assert read_all(kafka.bootstrap_servers, topics.dlq, at_least=0, timeout=2) == []
