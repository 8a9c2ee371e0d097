"""Tests of consumer/store/retention.py: expired keys leave the store when the purger runs."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from consumer.metrics import Metrics
from consumer.store import EntryStatus, IdempotencyStore
from consumer.store.postgres import PostgresStore
from consumer.store.retention import RetentionPurger
from consumer.store.sqlite import SqliteStore
from tests.store.faults import set_read_only
from tests.waiting import wait_until

RETENTION = timedelta(days=1)


def test_keys_past_the_retention_are_gone_after_the_purge_runs(tmp_path: Path) -> None:
    """Keys older than DEDUP_RETENTION are deleted by the purger thread; live ones stay."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = SqliteStore(tmp_path / "store.db", RETENTION, clock=lambda: now[0])
    for n in range(1200):  # more than two purge batches
        store.mark_pending(f"old-{n}", fingerprint="f", dag_id="d", dag_run_id=f"r{n}")
    now[0] += RETENTION + timedelta(hours=1)
    store.record("live", fingerprint="f", dag_id="d", dag_run_id="r", status=EntryStatus.TRIGGERED)
    stop, metrics = threading.Event(), Metrics()
    purger = RetentionPurger(store, stop, metrics=metrics, interval=3600)
    purger.start()
    try:
        wait_until(
            lambda: (
                metrics.registry.get_sample_value("trigger_consumer_store_purged_total") == 1200
            ),
            timeout=30,
            what="1200 expired keys purged",
        )
    finally:
        stop.set()
        purger.join(10)
    with store:
        rows = store._conn.execute("SELECT key FROM idempotency").fetchall()
    assert rows == [("live",)]


@contextmanager
def purging(store: IdempotencyStore, metrics: Metrics) -> Iterator[RetentionPurger]:
    """A purger thread every 50 ms (backing off to 200 ms), stopped after the block."""
    stop = threading.Event()
    purger = RetentionPurger(store, stop, metrics=metrics, interval=0.05, max_delay=0.2)
    purger.start()
    try:
        yield purger
    finally:
        stop.set()
        purger.join(10)
    assert not purger.is_alive()


def purged(metrics: Metrics) -> float:
    """How many keys the purger deleted so far."""
    return metrics.registry.get_sample_value("trigger_consumer_store_purged_total") or 0.0


def named(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The captured log events called ``event``."""
    return [entry for entry in list(logs) if entry["event"] == event]


def test_the_purger_survives_a_bug_logs_its_traceback_and_purges_after_it(
    tmp_path: Path,
) -> None:
    """A purge failing with a bug (the tables dropped) is logged with a traceback; it goes on."""
    path = tmp_path / "store.db"
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = SqliteStore(path, RETENTION, clock=lambda: now[0])
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("DROP TABLE idempotency")
        other.execute("DROP TABLE schema_version")
    metrics = Metrics()
    with capture_logs() as logs, purging(store, metrics) as purger:
        (crash, *_) = wait_until(
            lambda: named(logs, "store_purge_crashed"), timeout=30, what="the bug logged"
        )
        assert crash["exc_info"] is True
        assert crash["log_level"] == "error"
        assert purger.is_alive()
        SqliteStore(path, RETENTION).close()  # the schema back
        for n in range(3):
            store.mark_pending(f"old-{n}", fingerprint="f", dag_id="d", dag_run_id=f"r{n}")
        now[0] += RETENTION + timedelta(hours=1)
        wait_until(lambda: purged(metrics) == 3, timeout=30, what="3 keys purged after the bug")
    store.close()


def test_the_purger_goes_on_through_a_read_only_postgres_and_purges_after_it(
    new_database: str,
) -> None:
    """A read-only primary: each purge is a logged store outage; once writable, keys are purged."""
    now = [datetime.now(UTC)]
    with PostgresStore(new_database, RETENTION, clock=lambda: now[0]) as store:
        for n in range(3):
            store.mark_pending(f"old-{n}", fingerprint="f", dag_id="d", dag_run_id=f"r{n}")
        now[0] += RETENTION + timedelta(hours=1)
        metrics = Metrics()
        set_read_only(new_database, True)  # before the purger starts: its first purge fails
        try:
            with capture_logs() as logs, purging(store, metrics) as purger:
                wait_until(
                    lambda: any(
                        "read-only" in str(entry.get("error"))
                        for entry in named(logs, "store_purge_failed")
                    ),
                    timeout=30,
                    what="a purge refused by the read-only database",
                )
                assert purged(metrics) == 0
                set_read_only(new_database, False)
                wait_until(lambda: purged(metrics) == 3, timeout=30, what="3 keys purged")
                assert purger.is_alive()
        finally:
            set_read_only(new_database, False)
        assert not named(logs, "store_purge_crashed")
