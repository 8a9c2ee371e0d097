"""Real Kafka faults: foreign codecs, transactions, stalled brokers and members, resets.

Producers the project did not write come from librdkafka (confluent-kafka). Faults that
would disturb other tests (a broker paused, restarted or stopped, a segment corrupted)
run on a broker of this module's own, started by devstack's broker code.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from confluent_kafka import Producer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from devstack.airflow import AirflowServer
from devstack.kafka import KafkaBroker, start_broker
from devstack.procs import free_port
from tests.conftest import KafkaCluster, unique_name
from tests.faults.delay_proxy import DelayProxy
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    all_committed,
    committed,
    existing_runs,
    produce,
    read_all,
    replies_by_key,
    request,
    running,
    topics_on,
    worker_env,
)
from tests.waiting import wait_until

DAG = "devstack_paused"  # runs are created but never executed: cheap for the scheduler
SESSION_TIMEOUT = 10.0  # the worker's consumer session timeout (kafka_io/source.py)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker of this module's own: pausing or restarting it disturbs no other test."""
    broker = start_broker(tmp_path_factory.mktemp("own-kafka"), tie_to_parent=True)
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)  # a test that failed while it was paused
        broker.stop()


@pytest.fixture
def worker_on(airflow3: AirflowServer, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: a worker process on the given broker and topics, stopped at the end."""
    made: list[WorkerProcess] = []

    def make(bootstrap: str, topics: Topics, name: str = "worker", **options: str) -> WorkerProcess:
        env = worker_env(
            bootstrap=bootstrap,
            airflow=airflow3,
            topics=topics,
            store=tmp_path / f"{name}-store.db",
            extra={f"TRIGGER_CONSUMER_{k.upper()}": v for k, v in options.items()},
        )
        worker = WorkerProcess(env=env, log=tmp_path / f"{name}.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def _requests(keys: list[str]) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    return [(key.encode(), request(key, DAG), []) for key in keys]


def _replies_for(
    bootstrap: str, topics: Topics, keys: list[str], timeout: float = 180
) -> dict[str, list[dict[str, Any]]]:
    """The replies by key, once every one of ``keys`` has at least one (re-answers count once)."""

    def answered() -> dict[str, list[dict[str, Any]]] | None:
        by_key = replies_by_key(read_all(bootstrap, topics.replies, at_least=0, timeout=30))
        return by_key if set(keys) <= set(by_key) else None

    return wait_until(answered, timeout=timeout, interval=1, what=f"replies to {len(keys)} keys")


def _assert_all_answered_once_each_run(
    bootstrap: str, airflow: AirflowServer, topics: Topics, keys: list[str]
) -> None:
    """Every key answered (triggered or duplicate), one run per key, every offset committed."""
    by_key = _replies_for(bootstrap, topics, keys)
    assert set(by_key) == set(keys)
    assert {r["status"] for group in by_key.values() for r in group} <= {"triggered", "duplicate"}
    assert existing_runs(airflow, DAG, keys) == set(keys)
    wait_until(lambda: all_committed(bootstrap, topics), timeout=60, what="group lag 0")


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_librdkafka_codec_is_read(
    codec: str,
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Batches compressed by librdkafka with each codec are read and triggered, lag 0."""
    keys = [unique_name(f"codec-{codec}") for _ in range(30)]
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "compression.type": codec,
            "linger.ms": 20,  # batches of many records: the codec applies per batch
        }
    )
    for key in keys:
        producer.produce(topics.requests, key=key.encode(), value=request(key, DAG))
    assert producer.flush(30) == 0
    worker = make_worker()
    with running(worker):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(keys))
        wait_until(lambda: all_committed(kafka.bootstrap_servers, topics), timeout=60, what="lag 0")
        assert worker.process is not None and worker.process.poll() is None
    assert {r["status"] for g in replies_by_key(replies).values() for r in g} == {"triggered"}
    assert set(replies_by_key(replies)) == set(keys)
    assert existing_runs(airflow3, DAG, keys) == set(keys)


def test_aborted_transactions_trigger_nothing_and_lag_reaches_zero(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """A transactional producer commits two batches and aborts one: only committed ones run."""
    committed_keys = [unique_name("txn-ok") for _ in range(20)]
    aborted_keys = [unique_name("txn-aborted") for _ in range(10)]
    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap_servers, "transactional.id": unique_name("txn")}
    )
    producer.init_transactions(30)
    for keys, commit in (
        (committed_keys[:10], True),
        (aborted_keys, False),
        (committed_keys[10:], True),
    ):
        producer.begin_transaction()
        for key in keys:
            producer.produce(topics.requests, key=key.encode(), value=request(key, DAG))
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    worker = make_worker()
    with running(worker):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(committed_keys))
        # the transaction markers after the last records are committed past too
        wait_until(lambda: all_committed(kafka.bootstrap_servers, topics), timeout=60, what="lag 0")
    assert set(replies_by_key(replies)) == set(committed_keys)
    assert existing_runs(airflow3, DAG, aborted_keys) == set()
    assert existing_runs(airflow3, DAG, committed_keys) == set(committed_keys)


def test_worker_paused_past_its_session_timeout_rejoins(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """SIGSTOP the worker past its session timeout, SIGCONT: it rejoins, nothing lost or doubled."""
    keys = [unique_name("paused-worker") for _ in range(120)]
    worker = make_worker()
    with running(worker):
        assert worker.process is not None
        produce(kafka.bootstrap_servers, topics.requests, _requests(keys[:60]))
        read_all(kafka.bootstrap_servers, topics.replies, at_least=10)
        worker.process.send_signal(signal.SIGSTOP)
        try:
            produce(kafka.bootstrap_servers, topics.requests, _requests(keys[60:]))
            # the coordinator expels the silent member once its session times out
            wait_until(lambda: _expelled(kafka, topics), timeout=60, what="expulsion")
        finally:
            worker.process.send_signal(signal.SIGCONT)
        _assert_all_answered_once_each_run(kafka.bootstrap_servers, airflow3, topics, keys)
        assert worker.process.poll() is None, worker.tail()


def _expelled(kafka: KafkaCluster, topics: Topics) -> bool:
    """Whether the group has no live member (the paused worker's session expired)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        (group,) = admin.describe_consumer_groups([topics.group])
    finally:
        admin.close()
    return not group.members


def test_broker_paused_past_the_session_timeout_then_resumed(
    own_broker: KafkaBroker, airflow3: AirflowServer, worker_on: Callable[..., WorkerProcess]
) -> None:
    """SIGSTOP the broker mid-stream until the worker reports Kafka gone: all answered after."""
    bootstrap = own_broker.bootstrap_servers
    topics = topics_on(bootstrap)
    keys = [unique_name("paused-broker") for _ in range(100)]
    port = free_port()
    worker = worker_on(bootstrap, topics, http_port=str(port))
    with running(worker):
        assert own_broker.pid is not None and worker.process is not None
        produce(bootstrap, topics.requests, _requests(keys))
        read_all(bootstrap, topics.replies, at_least=10)
        os.kill(own_broker.pid, signal.SIGSTOP)
        try:  # silent past the session timeout: the worker says so on /readyz
            _wait_unready_for_kafka(port, timeout=SESSION_TIMEOUT * 4)
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
        _assert_all_answered_once_each_run(bootstrap, airflow3, topics, keys)
        assert worker.process.poll() is None, worker.tail()


def test_broker_restarted_mid_stream(
    own_broker: KafkaBroker, airflow3: AirflowServer, worker_on: Callable[..., WorkerProcess]
) -> None:
    """The broker restarts while requests flow: every request answered, one run per key."""
    bootstrap = own_broker.bootstrap_servers
    topics = topics_on(bootstrap)
    keys = [unique_name("restart") for _ in range(100)]
    worker = worker_on(bootstrap, topics)
    with running(worker):
        assert worker.process is not None
        produce(bootstrap, topics.requests, _requests(keys[:50]))
        read_all(bootstrap, topics.replies, at_least=10)
        own_broker.restart(tie_to_parent=True)
        produce(bootstrap, topics.requests, _requests(keys[50:]))
        _assert_all_answered_once_each_run(bootstrap, airflow3, topics, keys)
        assert worker.process.poll() is None, worker.tail()


def _wait_unready_for_kafka(port: int, *, timeout: float) -> None:
    """Wait until /readyz answers 503 naming Kafka."""

    def unready_for_kafka() -> bool:
        answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        return answer.status_code == 503 and any("kafka" in r for r in answer.json()["reasons"])

    wait_until(unready_for_kafka, timeout=timeout, interval=0.5, what="/readyz 503 naming kafka")


def test_readiness_tells_the_truth_about_a_stopped_broker(
    own_broker: KafkaBroker, worker_on: Callable[..., WorkerProcess]
) -> None:
    """/readyz turns unready within 30 s of the broker stopping, names Kafka, and recovers."""
    bootstrap = own_broker.bootstrap_servers
    topics = topics_on(bootstrap)
    port = free_port()
    worker = worker_on(bootstrap, topics, http_port=str(port))
    readyz = f"http://127.0.0.1:{port}/readyz"
    with running(worker):
        wait_until(lambda: requests.get(readyz, timeout=5).ok, timeout=60, what="ready")
        own_broker.stop()
        try:
            _wait_unready_for_kafka(port, timeout=30)
        finally:
            own_broker.start(tie_to_parent=True)
        wait_until(lambda: requests.get(readyz, timeout=5).ok, timeout=90, what="ready again")


def test_topic_deleted_and_recreated_under_a_running_worker(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """The request topic is re-created (offsets start again at 0): the worker goes on."""
    first = [unique_name("before-reset") for _ in range(60)]
    second = [unique_name("after-reset") for _ in range(3)]
    to_partition_0 = {"partitioner": lambda _key, all_, _available: all_[0]}
    worker = make_worker()
    with running(worker):
        assert worker.process is not None
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            _requests(first),
            client_options=to_partition_0,
        )
        wait_until(
            lambda: all_committed(kafka.bootstrap_servers, topics), timeout=120, what="lag 0"
        )
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        try:
            admin.delete_topics([topics.requests])
            # the running worker's metadata requests may re-create it at once (auto-creation)
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topics.requests, 3, 1)])
        finally:
            admin.close()
        # fewer records than the group had committed on partition 0: its position is now
        # past the end, so the consumer resets to the beginning, below what it tracked
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            _requests(second),
            client_options=to_partition_0,
        )
        by_key = _replies_for(kafka.bootstrap_servers, topics, first + second)
        assert worker.process.poll() is None, worker.tail()
    assert set(by_key) == set(first) | set(second)
    assert existing_runs(airflow3, DAG, second) == set(second)


def test_an_unreadable_batch_stalls_only_its_partition(
    own_broker: KafkaBroker, airflow3: AirflowServer, worker_on: Callable[..., WorkerProcess]
) -> None:
    """A batch corrupted on the broker's disk stalls its partition (in /readyz); others go on."""
    bootstrap = own_broker.bootstrap_servers
    topics = topics_on(bootstrap, partitions=2)
    healthy = [unique_name("healthy") for _ in range(10)]
    doomed = unique_name("corrupt")
    marker = b"CORRUPT-ME-" + doomed.encode()
    produce(bootstrap, topics.requests, [(None, request(doomed, DAG, note=marker.decode()), [])])
    segment = _segment_holding(own_broker, topics.requests, marker)
    partition = int(segment.parent.name.rsplit("-", 1)[1])
    at = segment.read_bytes().index(marker)
    with segment.open("r+b") as raw:  # one flipped byte: the batch's CRC no longer matches
        raw.seek(at)
        raw.write(bytes([raw.read(1)[0] ^ 0xFF]))
    port = free_port()
    worker = worker_on(bootstrap, topics, http_port=str(port))
    with running(worker):
        assert worker.process is not None
        produce(
            bootstrap,
            topics.requests,
            [(k.encode(), request(k, DAG), []) for k in healthy],
            client_options={"partitioner": lambda _key, all_, _avail: all_[1 - partition]},
        )
        replies = read_all(bootstrap, topics.replies, at_least=len(healthy))
        answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert answer.status_code == 503
        assert any(f"-{partition} stalled" in r for r in answer.json()["reasons"])
        assert worker.process.poll() is None, worker.tail()
    assert set(replies_by_key(replies)) == set(healthy)
    assert committed(bootstrap, topics.group, topics.requests).get(partition, 0) == 0
    assert existing_runs(airflow3, DAG, [doomed]) == set()


def _segment_holding(broker: KafkaBroker, topic: str, marker: bytes) -> Path:
    def find() -> Path | None:
        for segment in (broker.work / "data").glob(f"{topic}-*/*.log"):
            if marker in segment.read_bytes():
                return segment
        return None

    return wait_until(find, timeout=30, what="the record on the broker's disk")


def test_revoked_partitions_with_airflow_calls_in_flight(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """A member joins while the first is slow in Airflow: the first never answers what it lost."""
    keys = [unique_name("revoke") for _ in range(60)]
    upstream = urlsplit(airflow3.url)
    with DelayProxy((upstream.hostname or "127.0.0.1", upstream.port or 80), delay=1.0) as slow:
        port = free_port()
        first = make_worker(name="first", airflow_url=slow.url, http_port=str(port))
        second = make_worker(name="second")
        with running(first):
            first_name = _name_prefix(first)
            produce(kafka.bootstrap_servers, topics.requests, _requests(keys))
            read_all(kafka.bootstrap_servers, topics.replies, at_least=3)
            with running(second):
                revoked = wait_until(
                    lambda: next(
                        (
                            e
                            for e in first.events()
                            if e.get("event") == "partitions_revoked" and e["partitions"]
                        ),
                        None,
                    ),
                    timeout=60,
                    what="the first worker's revoke",
                )
                by_key = _replies_for(kafka.bootstrap_servers, topics, keys)
                wait_until(
                    lambda: all_committed(kafka.bootstrap_servers, topics),
                    timeout=120,
                    what="lag 0",
                )
                wait_until(lambda: _in_flight(port) == 0, timeout=60, what="no slot held")
    lost = _partition_numbers(revoked["partitions"]) - _owned_after(first, revoked)
    revoked_at = _instant(revoked["timestamp"])
    late = [
        reply
        for replies in by_key.values()
        for reply in replies
        if reply["worker"].startswith(first_name)
        and reply["source"]["partition"] in lost
        and _instant(reply["processed_at"]) > revoked_at
    ]
    assert lost, "the second member took no partition from the first"
    assert late == []
    assert set(by_key) == set(keys)
    assert existing_runs(airflow3, DAG, keys) == set(keys)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _partition_numbers(logged: list[str]) -> set[int]:
    """Partition numbers of a ``partitions_*`` log line (``Partition(topic=..., partition=N)``)."""
    return {int(match) for text in logged for match in re.findall(r"partition=(\d+)", text)}


def _owned_after(worker: WorkerProcess, revoked: dict[str, Any]) -> set[int]:
    """The partitions ``worker`` was assigned again in the rebalance that revoked them."""
    events = worker.events()
    after = events[events.index(revoked) + 1 :]
    assigned = next((e for e in after if e.get("event") == "partitions_assigned"), None)
    return _partition_numbers(assigned["partitions"]) if assigned else set()


def _name_prefix(worker: WorkerProcess) -> str:
    """How the worker names itself in replies: host-pid/version."""
    assert worker.process is not None
    return f"{socket.gethostname()}-{worker.process.pid}/"


def _in_flight(port: int) -> float:
    """The worker's ``trigger_consumer_in_flight`` gauge."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("trigger_consumer_in_flight ")]
    return float(line.split()[1])
