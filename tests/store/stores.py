"""What the store tests share: a manual clock, the retention they open stores with, helpers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from consumer.store import EntryStatus, IdempotencyStore, StoredEntry

RETENTION = timedelta(days=7)
START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class ManualClock:
    """A clock the test moves by hand, to cross the retention window without waiting."""

    def __init__(self, now: datetime = START) -> None:
        """Start at ``now``."""
        self.now = now

    def __call__(self) -> datetime:
        """Return the current manual time."""
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self.now += delta


def claim(store: IdempotencyStore, key: str, fingerprint: str = "fp-1") -> StoredEntry:
    """Mark ``key`` pending with fixed DAG fields."""
    return store.mark_pending(key, fingerprint=fingerprint, dag_id="etl", dag_run_id=f"run-{key}")


def trigger(store: IdempotencyStore, key: str, *, track: bool = False) -> StoredEntry:
    """Record ``key`` as triggered with fixed run fields."""
    return store.record(
        key,
        fingerprint="fp-1",
        dag_id="etl",
        dag_run_id=f"run-{key}",
        status=EntryStatus.TRIGGERED,
        run_state="queued",
        logical_date="2025-01-01T00:00:00+00:00",
        run_url=f"http://airflow/dags/etl/runs/run-{key}",
        track=track,
    )


def run_in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(index)`` in ``count`` threads started together, re-raising any failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            work(index)
        except BaseException as exc:  # noqa: BLE001 -- handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
