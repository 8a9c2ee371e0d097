"""Store faults on the shared PostgreSQL store: a read-only primary holds requests (issue 28).

A primary that turned read-only (a failover behind a stale address, a managed service's
storage-full mode) answers writes with SQLSTATE 25006. Requests then wait, like in any
other store outage: nothing is answered, dead-lettered or committed until it is writable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from consumer.store.postgres import PostgresStore
from devstack.airflow import AirflowServer
from devstack.procs import free_port
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    committed,
    end_offsets,
    produce,
    read_all,
    request,
    running,
)
from tests.scenarios.test_holds import (
    assert_all_triggered_once,
    events_named,
    readiness,
    unready_because,
)
from tests.store.faults import set_read_only
from tests.waiting import wait_until


def test_read_only_postgres_holds_requests_then_triggers_all(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    airflow3: AirflowServer,
    new_database: str,
) -> None:
    """The store's database turns read-only: held, unready, no answer; writable again: all run."""
    port = free_port()
    warm, *keys = [unique_name("read-only") for _ in range(4)]
    worker = make_worker(store_url=new_database, http_port=str(port))
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
        set_read_only(new_database, True)
        try:
            produce(
                kafka.bootstrap_servers,
                topics.requests,
                [(k.encode(), request(k), []) for k in keys],
            )
            wait_until(
                lambda: unready_because(port, "read-only transaction"),
                timeout=60,
                what="/readyz unready while the database is read-only",
            )
            held_at = time.monotonic()
            wait_until(lambda: time.monotonic() > held_at + 5, timeout=30, what="5 s read-only")
            assert unready_because(port, "store unavailable")
            assert sum(end_offsets(kafka.bootstrap_servers, topics.replies).values()) == 1
            assert sum(end_offsets(kafka.bootstrap_servers, topics.dlq).values()) == 0
            assert committed(kafka.bootstrap_servers, topics.group, topics.requests) == before
        finally:
            set_read_only(new_database, False)
        assert_all_triggered_once(kafka, topics, [warm, *keys], airflow3)
        assert not events_named(worker, "internal_error")
        wait_until(lambda: readiness(port)[0] == 200, timeout=60, what="/readyz ready again")


def test_worker_started_on_a_read_only_postgres_holds_then_triggers_all(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    airflow3: AirflowServer,
    new_database: str,
) -> None:
    """A replica started on a read-only primary (schema current) runs unready, then all run."""
    PostgresStore(new_database, timedelta(days=7)).close()  # the schema is current
    port = free_port()
    keys = [unique_name("starts-read-only") for _ in range(3)]
    worker = make_worker(store_url=new_database, http_port=str(port))
    set_read_only(new_database, True)
    try:
        with running(worker):
            produce(
                kafka.bootstrap_servers,
                topics.requests,
                [(k.encode(), request(k), []) for k in keys],
            )
            wait_until(
                lambda: unready_because(port, "read-only transaction"),
                timeout=60,
                what="/readyz unready while the database is read-only",
            )
            held_at = time.monotonic()
            wait_until(lambda: time.monotonic() > held_at + 5, timeout=30, what="5 s read-only")
            assert worker.process is not None and worker.process.poll() is None
            assert unready_because(port, "store unavailable")
            assert sum(end_offsets(kafka.bootstrap_servers, topics.replies).values()) == 0
            assert sum(end_offsets(kafka.bootstrap_servers, topics.dlq).values()) == 0
            set_read_only(new_database, False)
            assert_all_triggered_once(kafka, topics, keys, airflow3)
            assert not events_named(worker, "internal_error")
            assert not events_named(worker, "configuration_error")
            wait_until(lambda: readiness(port)[0] == 200, timeout=60, what="/readyz ready again")
    finally:
        set_read_only(new_database, False)
