"""Tests of consumer/retention.py: expired keys leave the store when the purger runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.metrics import Metrics
from consumer.retention import RetentionPurger
from consumer.store import EntryStatus
from consumer.store.sqlite import SqliteStore
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
