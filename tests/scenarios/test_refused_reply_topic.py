"""A reply topic the broker refuses: the reply goes to the default topic, the partition goes on.

The broker is one of this module's own with ``auto.create.topics.enable=false``, so a
reply topic that does not exist stays missing (issue 18).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kafka import KafkaAdminClient

from consumer.answering import REPLY_TOPIC_REFUSED_HEADER
from devstack.airflow import AirflowServer
from devstack.kafka import KafkaBroker, start_broker
from devstack.procs import free_port
from tests.conftest import unique_name
from tests.scenarios.harness import (
    WorkerProcess,
    all_committed,
    existing_runs,
    produce,
    read_all,
    request,
    running,
    topics_on,
    worker_env,
)
from tests.waiting import wait_until

DAG = "devstack_paused"  # runs are created but never executed: cheap for the scheduler


@pytest.fixture(scope="module")
def strict_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker of this module's own that never creates a topic on first use."""
    broker = start_broker(
        tmp_path_factory.mktemp("strict-kafka"),
        tie_to_parent=True,
        overrides=lambda _port, _ctrl: {"auto.create.topics.enable": "false"},
    )
    try:
        yield broker
    finally:
        broker.stop()


def _topic_exists(bootstrap: str, topic: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return topic in admin.list_topics()
    finally:
        admin.close()


def test_missing_reply_topic_falls_back_to_the_default_and_the_partition_goes_on(
    strict_broker: KafkaBroker, airflow3: AirflowServer, tmp_path: Path
) -> None:
    """A request naming an allowed but missing reply topic is answered on the default topic."""
    bootstrap = strict_broker.bootstrap_servers
    topics = topics_on(bootstrap, partitions=1)  # one partition: everything queues behind it
    missing = unique_name("missing-replies")
    before, refused, *after = [unique_name("refused-topic") for _ in range(5)]
    port = free_port()
    env = worker_env(
        bootstrap=bootstrap,
        airflow=airflow3,
        topics=topics,
        store=tmp_path / "store.db",
        extra={
            "TRIGGER_CONSUMER_REPLY_TOPIC_ALLOWLIST": missing,
            "TRIGGER_CONSUMER_HTTP_PORT": str(port),
        },
    )
    worker = WorkerProcess(env=env, log=tmp_path / "worker.log")
    with running(worker):
        assert worker.process is not None
        produce(
            bootstrap,
            topics.requests,
            [
                (before.encode(), request(before, DAG), []),
                (refused.encode(), request(refused, DAG, reply_topic=missing), []),
                *[(key.encode(), request(key, DAG), []) for key in after],
            ],
        )
        # the requests behind the refused one are answered while it is still retried
        replies = read_all(bootstrap, topics.replies, at_least=5, timeout=240)
        wait_until(lambda: all_committed(bootstrap, topics), timeout=60, what="group lag 0")
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert worker.process.poll() is None, worker.tail()

    by_key = {json.loads(r.value)["idempotency_key"]: r for r in replies}
    assert set(by_key) == {before, refused, *after}
    assert len(replies) == 5
    assert {json.loads(r.value)["status"] for r in replies} == {"triggered"}
    assert (REPLY_TOPIC_REFUSED_HEADER, missing.encode()) in by_key[refused].headers
    assert [k for k, r in by_key.items() if dict(r.headers).get(REPLY_TOPIC_REFUSED_HEADER)] == [
        refused
    ]
    assert "trigger_consumer_reply_topic_refused_total 1.0" in metrics
    warned = [e for e in worker.events() if e.get("event") == "reply_topic_refused"]
    assert [(e["reply_topic"], e["sent_to"]) for e in warned] == [(missing, topics.replies)]
    assert not _topic_exists(bootstrap, missing)
    assert existing_runs(airflow3, DAG, by_key) == set(by_key)


def test_a_refused_reply_topic_is_remembered_and_never_stalls_the_loop(
    strict_broker: KafkaBroker, airflow3: AirflowServer, tmp_path: Path
) -> None:
    """Once a reply topic is refused for good, later replies naming it go straight to the default.

    Twenty duplicates naming the missing topic, then a fresh request: all are answered within a
    minute. Before, each duplicate's answer waited on the loop thread for the topic's metadata
    (5 s) and spent its own five refusals, so the fresh request waited minutes behind them.
    """
    bootstrap = strict_broker.bootstrap_servers
    topics = topics_on(bootstrap, partitions=1)
    missing = unique_name("missing-replies")
    refused, fresh = unique_name("refused-again"), unique_name("fresh")
    env = worker_env(
        bootstrap=bootstrap,
        airflow=airflow3,
        topics=topics,
        store=tmp_path / "store.db",
        extra={"TRIGGER_CONSUMER_REPLY_TOPIC_ALLOWLIST": missing},
    )
    worker = WorkerProcess(env=env, log=tmp_path / "worker.log")
    with running(worker):
        produce(
            bootstrap,
            topics.requests,
            [(refused.encode(), request(refused, DAG, reply_topic=missing), [])],
        )
        read_all(bootstrap, topics.replies, at_least=1, timeout=120)
        again = request(refused, DAG, reply_topic=missing)
        produce(
            bootstrap,
            topics.requests,
            [
                *[(refused.encode(), again, []) for _ in range(20)],
                (fresh.encode(), request(fresh, DAG), []),
            ],
        )
        replies = read_all(bootstrap, topics.replies, at_least=22, timeout=60)
        wait_until(lambda: all_committed(bootstrap, topics), timeout=60, what="group lag 0")
    statuses = sorted(json.loads(r.value)["status"] for r in replies)
    assert statuses == ["duplicate"] * 20 + ["triggered"] * 2
    redirected = [r for r in replies if dict(r.headers).get(REPLY_TOPIC_REFUSED_HEADER)]
    assert len(redirected) == 21
    warned = [e for e in worker.events() if e.get("event") == "reply_topic_refused"]
    assert len(warned) == 1


def test_the_completed_reply_of_a_refused_reply_topic_reaches_the_default_topic(
    strict_broker: KafkaBroker, airflow3: AirflowServer, tmp_path: Path
) -> None:
    """A tracked request naming a missing reply topic: both its replies arrive, redirected.

    The ``completed`` reply went straight to the refused topic on every tracker poll and was
    never delivered anywhere (second adversarial review).
    """
    bootstrap = strict_broker.bootstrap_servers
    topics = topics_on(bootstrap, partitions=1)
    missing = unique_name("missing-replies")
    key = unique_name("tracked-refused")
    env = worker_env(
        bootstrap=bootstrap,
        airflow=airflow3,
        topics=topics,
        store=tmp_path / "store.db",
        extra={
            "TRIGGER_CONSUMER_REPLY_TOPIC_ALLOWLIST": missing,
            "TRIGGER_CONSUMER_TRACK_POLL_INTERVAL": "1s",
        },
    )
    worker = WorkerProcess(env=env, log=tmp_path / "worker.log")
    with running(worker):
        produce(
            bootstrap,
            topics.requests,
            [(key.encode(), request(key, "devstack_plain", reply_topic=missing, track=True), [])],
        )
        replies = read_all(bootstrap, topics.replies, at_least=2, timeout=180)
    assert [json.loads(r.value)["status"] for r in replies] == ["triggered", "completed"]
    assert all(dict(r.headers)[REPLY_TOPIC_REFUSED_HEADER] == missing.encode() for r in replies)
    assert not _topic_exists(bootstrap, missing)
