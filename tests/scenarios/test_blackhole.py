"""The worker's Kafka connections blackholed mid-stream, then restored (issue 19).

The broker is one of this module's own with a second listener, ``PROXIED``, advertised
at a blackhole proxy (tests/faults/delay_proxy.py) in front of it: the worker bootstraps
there, so all its traffic (consumer, coordinator, producer) goes through the proxy, while
the test reads replies and offsets on the direct ``PLAINTEXT`` listener.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devstack.airflow import AirflowServer
from devstack.kafka import KafkaBroker, start_broker
from devstack.procs import free_port
from tests.conftest import unique_name
from tests.faults.delay_proxy import DelayProxy
from tests.scenarios.harness import (
    WorkerProcess,
    all_committed,
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
OFFSET_COMMIT = 8  # the Kafka protocol's API key of OffsetCommit
BLACKHOLE_SECONDS = 15.0  # past the worker's 5 s commit timeout and 10 s session timeout


@pytest.fixture(scope="module")
def proxied_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[KafkaBroker, DelayProxy]]:
    """A broker of this module's own whose ``PROXIED`` listener is reached through a proxy."""
    proxied_port = free_port()
    with DelayProxy(("127.0.0.1", proxied_port)) as proxy:

        def listeners(port: int, ctrl_port: int) -> dict[str, str]:
            return {
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl_port},"
                f"PROXIED://127.0.0.1:{proxied_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
                f"PROXIED://127.0.0.1:{proxy.port}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                "PROXIED:PLAINTEXT",
            }

        broker = start_broker(
            tmp_path_factory.mktemp("proxied-kafka"), tie_to_parent=True, overrides=listeners
        )
        try:
            yield broker, proxy
        finally:
            proxy.restore()
            broker.stop()


def _is_offset_commit(chunk: bytes) -> bool:
    """Whether a client chunk starts with a Kafka request frame (size, api key) of OffsetCommit."""
    return len(chunk) >= 6 and int.from_bytes(chunk[4:6], "big") == OFFSET_COMMIT


def _count(worker: WorkerProcess, event: str, since: int = 0) -> int:
    return sum(1 for e in worker.events()[since:] if e.get("event") == event)


def test_connections_blackholed_during_a_commit_lose_nothing(
    proxied_broker: tuple[KafkaBroker, DelayProxy], airflow3: AirflowServer, tmp_path: Path
) -> None:
    """Blackholed for 15 s with answered work uncommitted: alive, all answered, lag 0 after."""
    broker, proxy = proxied_broker
    bootstrap = broker.bootstrap_servers
    topics = topics_on(bootstrap)
    keys = [unique_name("blackhole") for _ in range(150)]
    upstream = urlsplit(airflow3.url)
    # a slower Airflow spreads the answers out, so the blackhole falls among them
    with DelayProxy((upstream.hostname or "127.0.0.1", upstream.port or 80), 0.3) as slow:
        env = worker_env(
            bootstrap=f"127.0.0.1:{proxy.port}",
            airflow=airflow3,
            topics=topics,
            store=tmp_path / "store.db",
            extra={"TRIGGER_CONSUMER_AIRFLOW_URL": slow.url},
        )
        worker = WorkerProcess(env=env, log=tmp_path / "worker.log")
        with running(worker):
            assert worker.process is not None
            produce(bootstrap, topics.requests, [(k.encode(), request(k, DAG), []) for k in keys])
            wait_until(
                lambda: _count(worker, "request_done") >= 20,
                timeout=120,
                what="answers flowing",
            )
            mark = len(worker.events())
            # the next commit of answered work is swallowed, and everything after it
            proxy.blackhole_when(_is_offset_commit)
            try:
                wait_until(proxy.blackholed.is_set, timeout=60, what="a commit blackholed")
                began = time.monotonic()
                wait_until(
                    lambda: (
                        _count(worker, "commit_failed", mark) > 0
                        and time.monotonic() - began >= BLACKHOLE_SECONDS
                    ),
                    timeout=120,
                    interval=0.5,
                    what="a failed commit and 15 s of blackhole",
                )
            finally:
                proxy.restore()
            assert proxy.swallowed > 0
            assert worker.process.poll() is None, worker.tail()
            by_key = wait_until(
                lambda: (
                    (found := replies_by_key(read_all(bootstrap, topics.replies, at_least=0)))
                    and set(keys) <= set(found)
                    and found
                ),
                timeout=240,
                interval=1,
                what="every request answered after the blackhole",
            )
            wait_until(lambda: all_committed(bootstrap, topics), timeout=120, what="group lag 0")
            assert worker.process.poll() is None, worker.tail()
    assert set(by_key) == set(keys)
    assert {r["status"] for group in by_key.values() for r in group} <= {"triggered", "duplicate"}
    assert existing_runs(airflow3, DAG, keys) == set(keys)
    assert _count(worker, "internal_error") == 0
