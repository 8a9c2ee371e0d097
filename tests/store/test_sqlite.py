"""Tests of consumer/store/sqlite.py, and the IdempotencyStore contract on both stores.

Every test taking ``store`` runs on SqliteStore (a temporary file) and on PostgresStore (a
fresh database on the devstack PostgreSQL): the contract suite. ``sqlite_store`` tests are
about the SQLite file itself.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin, StoredEntry
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite import READ_BATCH, SqliteStore
from consumer.trace import TraceContext
from tests.store.origins import TRACE
from tests.store.stores import RETENTION, START, ManualClock, claim, run_in_threads, trigger
from tests.waiting import wait_until

THREADS = 16


def test_mark_pending_round_trips_every_field(store: IdempotencyStore) -> None:
    """A pending mark is read back with its fingerprint, DAG, run id and timestamps."""
    written = claim(store, "k1")

    read = store.get("k1")

    assert store.get("unknown") is None
    assert read == written
    assert read == StoredEntry(
        key="k1",
        fingerprint="fp-1",
        dag_id="etl",
        dag_run_id="run-k1",
        status=EntryStatus.PENDING,
        run_state=None,
        logical_date=None,
        run_url=None,
        track=False,
        completed_at=None,
        created_at=START,
        updated_at=START,
    )


def test_record_turns_pending_into_triggered_and_keeps_created_at(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Recording the outcome of a pending key stores the run and keeps the claim time."""
    claim(store, "k1")
    clock.advance(timedelta(seconds=5))

    recorded = trigger(store, "k1")

    assert store.get("k1") == recorded
    assert recorded.status is EntryStatus.TRIGGERED
    assert recorded.run_state == "queued"
    assert recorded.logical_date == "2025-01-01T00:00:00+00:00"
    assert recorded.run_url == "http://airflow/dags/etl/runs/run-k1"
    assert recorded.created_at == START
    assert recorded.updated_at == START + timedelta(seconds=5)


def test_record_without_pending_mark_creates_the_entry(store: IdempotencyStore) -> None:
    """A duplicate outcome for a key the store never saw is stored as a new entry."""
    recorded = store.record(
        "k1", fingerprint="fp-1", dag_id="etl", dag_run_id="run-k1", status=EntryStatus.DUPLICATE
    )

    assert store.get("k1") == recorded
    assert recorded.status is EntryStatus.DUPLICATE
    assert recorded.created_at == START


def test_record_refuses_pending_status(store: IdempotencyStore) -> None:
    """record() only takes final statuses; pending goes through mark_pending()."""
    with pytest.raises(ValueError, match="mark_pending"):
        store.record(
            "k1", fingerprint="fp", dag_id="etl", dag_run_id="r", status=EntryStatus.PENDING
        )


def test_mark_pending_returns_existing_entry_unchanged(store: IdempotencyStore) -> None:
    """A second claim of a live key returns the first claim, whatever its fingerprint."""
    first = claim(store, "k1", fingerprint="fp-1")
    triggered = trigger(store, "k1")

    again = claim(store, "k1", fingerprint="fp-other")

    assert first.fingerprint == "fp-1"
    assert again == triggered
    assert store.get("k1") == triggered


def test_release_forgets_the_key_so_it_can_be_claimed_afresh(store: IdempotencyStore) -> None:
    """After release, the key is unknown and a new fingerprint may claim it."""
    claim(store, "k1", fingerprint="fp-1")

    assert store.release("k1") is True
    assert store.release("k1") is False
    assert store.get("k1") is None
    assert claim(store, "k1", fingerprint="fp-2").fingerprint == "fp-2"


def test_expired_entry_is_invisible_and_replaced_by_a_new_claim(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Past the retention window get() sees nothing and a new claim writes a fresh pending mark."""
    trigger(store, "k1")
    clock.advance(RETENTION)
    assert store.get("k1") is not None
    clock.advance(timedelta(seconds=1))
    assert store.get("k1") is None

    fresh = claim(store, "k1", fingerprint="fp-2")

    assert fresh.status is EntryStatus.PENDING
    assert fresh.fingerprint == "fp-2"
    assert fresh.created_at == clock.now


def test_record_over_expired_entry_starts_a_new_retention_window(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """An outcome recorded after the entry expired counts its age from now, not the old claim."""
    claim(store, "k1")
    clock.advance(RETENTION + timedelta(seconds=1))

    recorded = trigger(store, "k1")

    assert recorded.created_at == clock.now
    assert store.get("k1") == recorded


def test_purge_deletes_only_entries_created_before_the_cutoff(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """purge(older_than) removes older entries, counts them, and leaves newer ones."""
    claim(store, "old-1")
    trigger(store, "old-2")
    clock.advance(timedelta(hours=1))
    claim(store, "new")

    assert store.purge(START + timedelta(minutes=30)) == 2
    assert store.purge(START + timedelta(minutes=30)) == 0
    assert store.get("old-1") is None
    assert store.get("new") is not None


def test_purge_expired_uses_the_configured_retention(
    sqlite_store: SqliteStore, clock: ManualClock
) -> None:
    """purge_expired() deletes exactly the entries older than the retention window."""
    claim(sqlite_store, "old")
    clock.advance(timedelta(days=2))
    claim(sqlite_store, "young")
    clock.advance(RETENTION - timedelta(days=1))

    assert sqlite_store.purge_expired() == 1
    assert sqlite_store.get("young") is not None
    with closing(sqlite3.connect(sqlite_store.path)) as raw:
        keys = [row[0] for row in raw.execute("SELECT key FROM idempotency")]
    assert keys == ["young"]


def test_purge_refuses_naive_datetimes(store: IdempotencyStore) -> None:
    """A cut-off without a timezone is refused rather than guessed."""
    with pytest.raises(ValueError, match="naive"):
        store.purge(datetime(2025, 1, 1))


def test_tracked_runs_lists_unfinished_tracked_runs_oldest_first(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Tracked, recorded, uncompleted runs are listed; pending and untracked ones are not."""
    trigger(store, "tracked-1", track=True)
    clock.advance(timedelta(seconds=1))
    trigger(store, "tracked-2", track=True)
    trigger(store, "untracked")
    claim(store, "pending")

    assert [entry.key for entry in store.tracked_runs()] == ["tracked-1", "tracked-2"]
    assert [entry.key for entry in store.tracked_runs(limit=1)] == ["tracked-1"]


def test_mark_completed_removes_run_from_tracking(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """A completed tracked run keeps its final state and leaves the tracking list."""
    trigger(store, "k1", track=True)
    clock.advance(timedelta(minutes=3))

    assert store.mark_completed("k1", "success") is True
    assert store.mark_completed("unknown", "success") is False

    entry = store.get("k1")
    assert entry is not None
    assert entry.run_state == "success"
    assert entry.completed_at == clock.now
    assert store.tracked_runs() == []


def test_record_round_trips_the_request_origin(store: IdempotencyStore) -> None:
    """Every read gives back the origin record was given, route and trace context included."""
    origin = RequestOrigin(
        "requests", 2, 41, 1_735_689_600_000, "corr-1", "team-replies", "orders", TRACE
    )
    store.record(
        "k1",
        fingerprint="fp-1",
        dag_id="etl",
        dag_run_id="run-k1",
        status=EntryStatus.TRIGGERED,
        track=True,
        origin=origin,
    )

    entry = store.get("k1")

    assert entry is not None
    assert entry.origin == origin
    assert store.get_many(["k1"])["k1"].origin == origin
    assert store.tracked_runs()[0].origin == origin
    assert store.lease_tracked("owner", timedelta(minutes=1))[0].origin == origin
    assert trigger(store, "k2").origin is None


def test_record_replaces_route_and_trace_with_the_recording_requests(
    store: IdempotencyStore,
) -> None:
    """A trace without tracestate reads back so; an origin without route or trace clears them."""
    untraced = RequestOrigin("requests", 0, 1, None)
    parent_only = replace(untraced, route="orders", trace=TraceContext(TRACE.traceparent))
    store.mark_pending(
        "k1", fingerprint="fp-1", dag_id="etl", dag_run_id="run-k1", origin=parent_only
    )
    assert (got := store.get("k1")) is not None and got.origin == parent_only

    recorded = store.record(
        "k1",
        fingerprint="fp-1",
        dag_id="etl",
        dag_run_id="run-k1",
        status=EntryStatus.TRIGGERED,
        origin=untraced,
    )

    assert recorded.origin == untraced
    assert (recorded.origin.route, recorded.origin.trace) == (None, None)


def test_abandon_tracking_removes_run_from_tracking_until_recorded_again(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """An abandoned run leaves the tracking list for good; only another run recorded returns."""
    trigger(store, "k1", track=True)
    clock.advance(timedelta(hours=25))

    assert store.abandon_tracking("k1") is True
    assert store.abandon_tracking("unknown") is False

    entry = store.get("k1")
    assert entry is not None
    assert (entry.abandoned_at, entry.completed_at, entry.run_state) == (clock.now, None, "queued")
    assert entry.track is True
    assert store.tracked_runs() == []
    assert trigger(store, "k1", track=True).abandoned_at == clock.now
    assert store.tracked_runs() == []
    again = store.record(
        "k1",
        fingerprint="fp-1",
        dag_id="etl",
        dag_run_id="run-k1-new",
        status=EntryStatus.TRIGGERED,
        track=True,
    )
    assert again.abandoned_at is None
    assert [e.key for e in store.tracked_runs()] == ["k1"]


def test_data_survives_reopening_the_file(db_path: Path, clock: ManualClock) -> None:
    """Entries written before a clean restart are read back after it."""
    with SqliteStore(db_path, RETENTION, clock=clock) as first:
        trigger(first, "k1", track=True)
        claim(first, "k2")

    with SqliteStore(db_path, RETENTION, clock=clock) as second:
        triggered = second.get("k1")
        pending = second.get("k2")

    assert triggered is not None
    assert triggered.status is EntryStatus.TRIGGERED
    assert triggered.track is True
    assert pending is not None
    assert pending.status is EntryStatus.PENDING


def test_pending_mark_survives_a_crash_before_recording(db_path: Path) -> None:
    """A process killed after mark_pending, without close, leaves the key pending on reopen."""
    script = (
        "import os, sys\n"
        "from datetime import timedelta\n"
        "from consumer.store import open_store\n"
        "store = open_store('sqlite:///' + sys.argv[1], timedelta(days=7))\n"
        "store.mark_pending('k1', fingerprint='fp-1', dag_id='etl', dag_run_id='run-k1')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db_path.resolve())], check=True, timeout=30)

    with SqliteStore(db_path, RETENTION) as reopened:
        entry = reopened.get("k1")

    assert entry is not None
    assert entry.status is EntryStatus.PENDING
    assert entry.fingerprint == "fp-1"


def test_file_uses_wal_journal(sqlite_store: SqliteStore) -> None:
    """The database file is in WAL mode, which persists for other connections."""
    with closing(sqlite3.connect(sqlite_store.path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_on_distinct_keys_lose_nothing(store: IdempotencyStore) -> None:
    """Sixteen threads claiming and recording their own keys leave every entry triggered."""
    per_thread = 25

    def work(index: int) -> None:
        for item in range(per_thread):
            key = f"t{index}-{item}"
            claim(store, key)
            trigger(store, key)

    run_in_threads(THREADS, work)

    for index in range(THREADS):
        for item in range(per_thread):
            entry = store.get(f"t{index}-{item}")
            assert entry is not None
            assert entry.status is EntryStatus.TRIGGERED


def test_concurrent_claims_on_one_key_have_one_winner(store: IdempotencyStore) -> None:
    """Sixteen threads claiming one key with different fingerprints all see the same winner."""
    seen: list[str] = [""] * THREADS

    def work(index: int) -> None:
        seen[index] = claim(store, "shared", fingerprint=f"fp-{index}").fingerprint

    run_in_threads(THREADS, work)

    winner = store.get("shared")
    assert winner is not None
    assert set(seen) == {winner.fingerprint}


def test_concurrent_claims_from_two_connections_have_one_winner(db_path: Path) -> None:
    """Two stores on one file (as two processes would be) never both win a claim."""
    stores = [SqliteStore(db_path, RETENTION), SqliteStore(db_path, RETENTION)]
    keys = [f"k{item}" for item in range(40)]
    seen: dict[tuple[int, str], str] = {}

    def work(index: int) -> None:
        own = stores[index % 2]
        for key in keys:
            seen[(index, key)] = claim(own, key, fingerprint=f"fp-{index}").fingerprint

    try:
        run_in_threads(8, work)
        for key in keys:
            winner = stores[0].get(key)
            assert winner is not None
            assert {seen[(index, key)] for index in range(8)} == {winner.fingerprint}
    finally:
        for opened in stores:
            opened.close()


def test_get_many_reads_live_entries_in_batches(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """get_many returns what get would, key by key, across READ_BATCH chunks; expired: absent."""
    old = trigger(store, "old")
    clock.advance(RETENTION)
    keys = [f"k{i}" for i in range(READ_BATCH + 7)]  # more than one SELECT
    made = {key: trigger(store, key) for key in keys[::2]}
    pending = claim(store, "pending")
    assert store.get_many(["old"]) == {"old": old}
    clock.advance(timedelta(seconds=1))  # "old" is now past the retention window

    found = store.get_many([*keys, "pending", "old", "unknown", keys[0]])

    assert found == {**made, "pending": pending}
    assert store.get_many([]) == {}


def test_pending_mark_keeps_the_claiming_request_origin(store: IdempotencyStore) -> None:
    """mark_pending stores the claimer's origin, so its re-delivery is recognisable anywhere."""
    origin = RequestOrigin(
        "requests", 3, 41, 1_735_689_600_000, "corr-1", "team-replies", "orders", TRACE
    )

    claimed = store.mark_pending(
        "k1", fingerprint="fp-1", dag_id="etl", dag_run_id="run-k1", origin=origin
    )

    assert claimed.origin == origin
    assert store.get("k1") == claimed


def test_duplicate_never_overwrites_another_requests_entry(store: IdempotencyStore) -> None:
    """A duplicate leaves another request's pending mark and triggered entry; triggered wins."""
    first = RequestOrigin("requests", 0, 1, None)
    other = RequestOrigin("requests", 5, 9, None)
    store.mark_pending("k1", fingerprint="fp-1", dag_id="etl", dag_run_id="run-k1", origin=first)

    def record(status: EntryStatus, origin: RequestOrigin) -> StoredEntry:
        return store.record(
            "k1",
            fingerprint="fp-1",
            dag_id="etl",
            dag_run_id="run-k1",
            status=status,
            origin=origin,
        )

    assert record(EntryStatus.DUPLICATE, other).status is EntryStatus.PENDING
    assert record(EntryStatus.TRIGGERED, other).origin == other
    kept = record(EntryStatus.DUPLICATE, first)
    assert (kept.status, kept.origin) == (EntryStatus.TRIGGERED, other)
    own = record(EntryStatus.TRIGGERED, other)
    assert own.status is EntryStatus.TRIGGERED


def let_leases_expire(store: IdempotencyStore, clock: ManualClock, ttl: timedelta) -> None:
    """Move past ``ttl`` on the clock the store times leases by.

    SQLite times them by the injected clock, moved at once; PostgreSQL by the server's
    clock, so that a replica's own clock plays no part: there real time has to pass.
    """
    clock.advance(ttl + timedelta(seconds=1))
    if isinstance(store, PostgresStore):
        deadline = time.monotonic() + ttl.total_seconds() + 0.2
        wait_until(lambda: time.monotonic() > deadline, timeout=ttl.total_seconds() + 5)


def test_lease_gives_each_tracked_run_to_one_owner_until_it_expires(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """A leased run is not leased to another owner until the lease ends; the holder renews it."""
    trigger(store, "k1", track=True)
    ttl = timedelta(seconds=2)

    assert [e.key for e in store.lease_tracked("a", ttl)] == ["k1"]
    assert store.lease_tracked("b", ttl) == []
    assert [e.key for e in store.lease_tracked("a", ttl)] == ["k1"]
    let_leases_expire(store, clock, ttl)
    assert [e.key for e in store.lease_tracked("b", ttl)] == ["k1"]
    assert store.lease_tracked("a", ttl) == []


def test_released_or_completed_runs_leave_their_lease(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """release_leases hands runs over at once; a completed run is leased to nobody."""
    trigger(store, "k1", track=True)
    trigger(store, "k2", track=True)
    ttl = timedelta(minutes=5)
    store.lease_tracked("a", ttl)

    assert store.release_leases("a") == 2
    assert [e.key for e in store.lease_tracked("b", ttl)] == ["k1", "k2"]
    store.mark_completed("k1", "success")
    store.release_leases("b")
    assert [e.key for e in store.lease_tracked("a", ttl)] == ["k2"]


def test_renew_extends_only_the_leases_the_owner_still_holds(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """renew_leases returns the owner's live tracked keys; taken-over or completed ones are out."""
    for key in ("k1", "k2", "k3"):
        trigger(store, key, track=True)
    ttl = timedelta(minutes=5)
    store.lease_tracked("a", ttl, limit=2)

    assert store.renew_leases("a", ttl, ["k1", "k2", "k3", "unknown"]) == {"k1", "k2"}
    assert store.renew_leases("b", ttl, ["k1", "k2"]) == set()
    store.release_leases("a")
    assert [e.key for e in store.lease_tracked("b", ttl)] == ["k1", "k2", "k3"]
    assert store.renew_leases("a", ttl, ["k1", "k2"]) == set()
    assert store.mark_completed("k1", "success", owner="b") is True
    assert store.renew_leases("b", ttl, ["k1", "k2"]) == {"k2"}
    assert store.renew_leases("b", ttl, []) == set()


def test_an_expired_lease_nobody_took_is_still_its_owners_to_renew(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """The owner column is the fence: a lapsed lease no other owner took is renewed, not lost."""
    trigger(store, "k1", track=True)
    ttl = timedelta(seconds=1)
    store.lease_tracked("a", ttl)
    let_leases_expire(store, clock, ttl)

    assert store.renew_leases("a", timedelta(minutes=5), ["k1"]) == {"k1"}
    assert store.lease_tracked("b", ttl) == []


def test_only_the_lease_holder_marks_or_abandons_a_tracked_run(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """mark_completed and abandon_tracking with an owner succeed for the holder alone."""
    trigger(store, "k1", track=True)
    trigger(store, "k2", track=True)
    store.lease_tracked("a", timedelta(minutes=5))

    assert store.mark_completed("k1", "success", owner="b") is False
    assert store.abandon_tracking("k2", owner="b") is False
    assert [e.key for e in store.tracked_runs()] == ["k1", "k2"]
    assert store.mark_completed("k1", "success", owner="a") is True
    assert store.abandon_tracking("k2", owner="a") is True
    assert store.tracked_runs() == []
    assert store.renew_leases("a", timedelta(minutes=5), ["k1", "k2"]) == set()


def test_a_renewal_never_shortens_a_longer_lease(
    sqlite_store: SqliteStore, clock: ManualClock
) -> None:
    """A short renewal after the long fence before a publish keeps the fence's end."""
    trigger(sqlite_store, "k1", track=True)
    sqlite_store.lease_tracked("a", timedelta(seconds=10))
    assert sqlite_store.renew_leases("a", timedelta(minutes=5), ["k1"]) == {"k1"}
    assert sqlite_store.renew_leases("a", timedelta(seconds=10), ["k1"]) == {"k1"}

    clock.advance(timedelta(minutes=1))

    assert sqlite_store.lease_tracked("b", timedelta(seconds=10)) == []


def test_lease_rotates_through_more_runs_than_one_batch(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Least recently leased first: with more runs than a batch, every run gets its turn."""
    keys = [f"k{index}" for index in range(5)]
    for key in keys:
        trigger(store, key, track=True)
        clock.advance(timedelta(seconds=1))
    ttl = timedelta(seconds=1)
    seen: list[str] = []
    for _ in range(3):
        seen += [e.key for e in store.lease_tracked("a", ttl, limit=2)]
        clock.advance(timedelta(seconds=2))

    assert set(seen) == set(keys)
    assert seen[:4] == keys[:4]


def test_purge_expired_deletes_in_bounded_batches(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """purge_expired(batch) deletes at most batch expired entries per call, never live ones."""
    for index in range(5):
        claim(store, f"old{index}")
    clock.advance(RETENTION + timedelta(seconds=1))
    claim(store, "young")

    assert [store.purge_expired(batch=2) for _ in range(4)] == [2, 2, 1, 0]
    assert store.get("young") is not None


def test_recording_a_completed_run_again_keeps_it_completed(store: IdempotencyStore) -> None:
    """A second record of the same run (a rebalance's RESUMED attempt) never re-tracks it."""
    origin = RequestOrigin("requests", 0, 7, None, "corr-1")
    store.mark_pending("k1", fingerprint="fp-1", dag_id="etl", dag_run_id="run-k1", origin=origin)

    def record(status: EntryStatus, run_state: str) -> StoredEntry:
        return store.record(
            "k1",
            fingerprint="fp-1",
            dag_id="etl",
            dag_run_id="run-k1",
            status=status,
            run_state=run_state,
            track=True,
            origin=origin,
        )

    record(EntryStatus.TRIGGERED, "queued")
    assert store.mark_completed("k1", "success") is True
    completed = store.get("k1")
    assert completed is not None and completed.completed_at is not None

    again = record(EntryStatus.TRIGGERED, "running")
    demoted = record(EntryStatus.DUPLICATE, "running")

    for entry in (again, demoted, store.get("k1")):
        assert entry is not None
        assert (entry.status, entry.run_state) == (EntryStatus.TRIGGERED, "success")
        assert entry.completed_at == completed.completed_at
    assert store.tracked_runs() == []
    assert store.lease_tracked("b", timedelta(minutes=5)) == []


def test_recording_a_tracked_run_again_keeps_its_lease(store: IdempotencyStore) -> None:
    """A second record of a leased run leaves the lease with its holder (the publish fence)."""
    trigger(store, "k1", track=True)
    ttl = timedelta(minutes=5)
    assert [e.key for e in store.lease_tracked("a", ttl)] == ["k1"]

    trigger(store, "k1", track=True)

    assert store.lease_tracked("b", ttl) == []
    assert store.renew_leases("a", ttl, ["k1"]) == {"k1"}
    assert store.mark_completed("k1", "success", owner="a") is True


def test_mark_pending_says_whether_this_call_wrote_the_mark(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """The claim that wrote the mark says so; a later claim of the live key does not."""
    assert claim(store, "k1").claimed_here
    clock.advance(timedelta(microseconds=1))  # any later claim reads a later clock
    assert not claim(store, "k1").claimed_here
