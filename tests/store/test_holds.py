"""Tests of consumer/store/holds.py: store calls wait out a store outage instead of failing."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from consumer.errors import StoppingError, StoreUnavailableError
from consumer.store.holds import StoreHold
from consumer.store.sqlite import SqliteStore


def test_a_locked_store_raises_store_unavailable(tmp_path: Path) -> None:
    """A write lock held by another connection past the busy timeout is StoreUnavailableError."""
    path = tmp_path / "store.db"
    store = SqliteStore(path, timedelta(days=1), busy_timeout_ms=50)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailableError, match="database is locked"):
            store.mark_pending("k", fingerprint="f", dag_id="d", dag_run_id="r")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert store.mark_pending("k", fingerprint="f", dag_id="d", dag_run_id="r").key == "k"
    store.close()


def test_a_held_call_retries_until_the_lock_is_released(tmp_path: Path) -> None:
    """StoreHold retries a locked write, is unavailable meanwhile, and returns once it succeeds."""
    path = tmp_path / "store.db"
    store = SqliteStore(path, timedelta(days=1), busy_timeout_ms=50)
    hold = StoreHold(initial_delay=0.05, max_delay=0.1)
    lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    held = threading.Event()

    def release_when_held() -> None:
        while not held.wait(0.01):
            if not hold.available:
                held.set()
        lock.execute("ROLLBACK")
        lock.close()

    releaser = threading.Thread(target=release_when_held)
    releaser.start()
    entry = hold.call(lambda: store.mark_pending("k", fingerprint="f", dag_id="d", dag_run_id="r"))
    releaser.join(10)
    assert held.is_set()
    assert entry.key == "k"
    assert (hold.available, hold.reason) == (True, None)
    store.close()


def test_a_held_call_gives_up_when_the_worker_stops() -> None:
    """A stop while the store fails raises StoppingError: no reply, no commit."""
    stop = threading.Event()
    stop.set()

    def failing() -> None:
        raise StoreUnavailableError("disk full")

    with pytest.raises(StoppingError):
        StoreHold(stop).call(failing)


def test_only_store_calls_that_succeeded_are_timed() -> None:
    """A held call is timed once, when it finally succeeds; ``timed`` never holds."""
    observed: list[tuple[str, float]] = []
    hold = StoreHold(
        initial_delay=0.001, observe=lambda op, seconds: observed.append((op, seconds))
    )
    failures = iter([StoreUnavailableError("locked")])

    def flaky() -> int:
        for failure in failures:
            raise failure
        return 7

    assert hold.call(flaky, "record") == 7
    assert hold.timed(lambda: 8, "read_batch") == 8
    assert [op for op, _ in observed] == ["record", "read_batch"]
    assert all(seconds >= 0 for _, seconds in observed)
