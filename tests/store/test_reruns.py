"""Tests of the re-run marks (sqlite_reruns.py, postgres_reruns.py) on both stores.

Every test taking ``store`` runs on SqliteStore and on PostgresStore (the contract suite of
``get_rerun``, ``mark_rerun`` and ``record_rerun``); ``two_stores`` are two connections to
one database, as two replicas would be.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin, RerunMark, RerunStatus
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite import SqliteStore
from tests.store.origins import TRACE
from tests.store.stores import RETENTION, START, ManualClock, claim, run_in_threads, trigger

AT = ("requests", 0, 7)
LATER_AT = ("requests", 0, 12)
THREADS = 8


def stored_marks(store: IdempotencyStore) -> set[tuple[str, str]]:
    """Every (key, rerun id) row the store's database holds, hidden ones too."""
    if isinstance(store, SqliteStore):
        return set(store._conn.execute("SELECT key, rerun_id FROM reruns").fetchall())
    assert isinstance(store, PostgresStore)
    with store._pool.connection() as conn:
        rows = conn.execute("SELECT key, rerun_id FROM trigger_consumer_reruns").fetchall()
    return {(str(key), str(rerun_id)) for key, rerun_id in rows}


def test_a_mark_reads_back_pending_with_its_evidence_and_coordinates(
    store: IdempotencyStore,
) -> None:
    """mark_rerun writes a pending mark, claimed here, that get_rerun reads back equal."""
    assert store.get_rerun("k1", "r1") is None

    marked = store.mark_rerun("k1", "r1", evidence="clock-1", at=AT)

    assert marked.claimed_here
    assert marked == RerunMark(
        key="k1",
        rerun_id="r1",
        status=RerunStatus.PENDING,
        evidence="clock-1",
        at=AT,
        run_state=None,
        created_at=START,
    )
    assert store.get_rerun("k1", "r1") == marked
    assert store.get_rerun("k1", "r2") is None
    assert store.get_rerun("k2", "r1") is None


def test_a_second_mark_returns_the_first_unchanged(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Marking a held (key, rerun id) again returns the holder as it was, not claimed here."""
    first = store.mark_rerun("k1", "r1", evidence="clock-1", at=AT)
    clock.advance(timedelta(seconds=3))

    again = store.mark_rerun("k1", "r1", evidence="clock-2", at=LATER_AT)

    assert again == first
    assert not again.claimed_here
    assert store.mark_rerun("k1", "r2", evidence=None, at=LATER_AT).claimed_here


def test_marks_racing_on_one_store_have_exactly_one_claimant(store: IdempotencyStore) -> None:
    """Threads marking one re-run at the same clock reading: one is claimed here, all agree."""
    seen: list[RerunMark | None] = [None] * THREADS

    def work(index: int) -> None:
        seen[index] = store.mark_rerun("k1", "r1", evidence=f"clock-{index}", at=("t", 0, index))

    run_in_threads(THREADS, work)

    marks = [mark for mark in seen if mark is not None]
    (winner,) = [mark for mark in marks if mark.claimed_here]
    assert marks == [winner] * THREADS
    assert store.get_rerun("k1", "r1") == winner


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request: pytest.FixtureRequest, db_path: Path) -> Iterator[list[IdempotencyStore]]:
    """Two stores on one database (real clocks), as two processes or replicas would be."""
    opened: list[IdempotencyStore]
    if request.param == "sqlite":
        opened = [SqliteStore(db_path, RETENTION), SqliteStore(db_path, RETENTION)]
    else:
        url = request.getfixturevalue("new_database")
        opened = [PostgresStore(url, RETENTION), PostgresStore(url, RETENTION)]
    try:
        yield opened
    finally:
        for each in opened:
            each.close()


def test_marks_racing_from_two_connections_have_exactly_one_claimant(
    two_stores: list[IdempotencyStore],
) -> None:
    """Two connections marking the same re-runs at once: each has one claimant and one holder."""
    rerun_ids = [f"r{index}" for index in range(30)]
    seen: dict[tuple[int, str], RerunMark] = {}

    def work(index: int) -> None:
        own = two_stores[index % 2]
        for rerun_id in rerun_ids:
            mark = own.mark_rerun("k1", rerun_id, evidence=f"e-{index}", at=("t", 0, index))
            seen[(index, rerun_id)] = mark

    run_in_threads(4, work)

    for rerun_id in rerun_ids:
        marks = [seen[(index, rerun_id)] for index in range(4)]
        assert sum(mark.claimed_here for mark in marks) == 1, rerun_id
        assert len({mark.evidence for mark in marks}) == 1, rerun_id


def test_recording_a_marked_rerun_keeps_its_evidence_and_age(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """record_rerun turns the mark done with the run state, keeping evidence and created_at."""
    store.mark_rerun("k1", "r1", evidence="clock-1", at=AT)
    clock.advance(timedelta(seconds=5))

    store.record_rerun("k1", "r1", run_state="queued", at=LATER_AT)

    done = store.get_rerun("k1", "r1")
    assert done == RerunMark("k1", "r1", RerunStatus.DONE, "clock-1", LATER_AT, "queued", START)
    assert not store.mark_rerun("k1", "r1", evidence="clock-2", at=AT).claimed_here


def test_recording_an_unmarked_rerun_writes_it_done(store: IdempotencyStore) -> None:
    """A re-run noted done without a pending mark (the key had no run) is written done."""
    store.record_rerun("k1", "r1", run_state=None, at=AT)

    assert store.get_rerun("k1", "r1") == RerunMark(
        "k1", "r1", RerunStatus.DONE, None, AT, None, START
    )


def test_recording_without_track_leaves_the_entry_alone(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """record_rerun(track=False) changes no field of the key's entry, completed or not."""
    trigger(store, "k1", track=True)
    store.mark_completed("k1", "success")
    completed = store.get("k1")
    clock.advance(timedelta(minutes=1))

    store.record_rerun("k1", "r1", run_state="queued", at=AT)

    assert store.get("k1") == completed
    assert store.tracked_runs() == []


def test_recording_with_track_tracks_a_completed_run_again_for_the_new_origin(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """With track, a completed run is tracked again, its state and origin the re-run's."""
    first = RequestOrigin("requests", 0, 3, None, "corr-1", "replies-1")
    rerun = RequestOrigin("requests", 0, 12, 1_735_689_600_000, "corr-2", "replies-2", "r", TRACE)
    store.record(
        "k1",
        fingerprint="fp-1",
        dag_id="etl",
        dag_run_id="run-k1",
        status=EntryStatus.TRIGGERED,
        run_state="queued",
        track=True,
        origin=first,
    )
    assert store.mark_completed("k1", "success") is True
    clock.advance(timedelta(minutes=1))

    store.record_rerun("k1", "r1", run_state="running", at=LATER_AT, track=True, origin=rerun)

    entry = store.get("k1")
    assert entry is not None
    assert (entry.track, entry.completed_at, entry.abandoned_at) == (True, None, None)
    assert (entry.run_state, entry.origin, entry.updated_at) == ("running", rerun, clock.now)
    # the horizon and the retention count from the re-run (a run re-run days later is tracked)
    assert (entry.created_at, entry.dag_run_id) == (clock.now, "run-k1")
    assert [e.key for e in store.tracked_runs()] == ["k1"]


def test_recording_with_track_takes_the_run_from_its_old_tracker(
    store: IdempotencyStore,
) -> None:
    """A tracker that leased the run before the re-run can no longer complete or renew it."""
    trigger(store, "k1", track=True)
    ttl = timedelta(minutes=5)
    assert [e.key for e in store.lease_tracked("a", ttl)] == ["k1"]

    store.record_rerun("k1", "r1", run_state="running", at=AT, track=True)

    assert store.mark_completed("k1", "success", owner="a") is False
    assert store.abandon_tracking("k1", owner="a") is False
    assert store.renew_leases("a", ttl, ["k1"]) == set()
    assert [e.key for e in store.lease_tracked("b", ttl)] == ["k1"]
    assert store.mark_completed("k1", "success", owner="b") is True


def test_release_forgets_the_keys_reruns(store: IdempotencyStore) -> None:
    """After release the key's re-run ids are unknown: the next mark of one is a new claim."""
    claim(store, "k1")
    store.mark_rerun("k1", "r1", evidence="clock-1", at=AT)
    store.record_rerun("k1", "r2", run_state="queued", at=AT)
    store.mark_rerun("k2", "r1", evidence="other key", at=AT)

    assert store.release("k1") is True

    assert store.get_rerun("k1", "r1") is None
    assert store.get_rerun("k1", "r2") is None
    assert stored_marks(store) == {("k2", "r1")}
    assert store.mark_rerun("k1", "r1", evidence="clock-2", at=LATER_AT).claimed_here


def test_purge_deletes_the_purged_keys_reruns_and_no_others(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """purge(older_than) deletes the marks of the entries it deletes; younger keys keep theirs."""
    trigger(store, "old")
    store.mark_rerun("old", "r1", evidence="clock-1", at=AT)
    clock.advance(timedelta(hours=1))
    trigger(store, "young")
    store.mark_rerun("young", "r1", evidence="clock-1", at=AT)
    store.mark_rerun("old", "r2", evidence="clock-2", at=AT)  # written late in old's life

    assert store.purge(START + timedelta(minutes=30)) == 1

    assert stored_marks(store) == {("young", "r1")}
    assert claim(store, "old").claimed_here
    assert store.get_rerun("old", "r1") is None


def test_an_expired_keys_reruns_are_hidden_then_purged_in_batches(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Past the retention a key's marks are hidden at once and purged with it, batch by batch."""
    for index in range(3):
        trigger(store, f"old{index}")
        store.mark_rerun(f"old{index}", "r1", evidence="clock", at=AT)
    store.mark_rerun("no-entry", "r1", evidence=None, at=AT)
    clock.advance(timedelta(days=1))
    trigger(store, "young")
    store.mark_rerun("young", "r1", evidence="clock", at=AT)
    clock.advance(RETENTION)

    assert store.get_rerun("old0", "r1") is None
    assert store.get_rerun("no-entry", "r1") is None
    assert store.get_rerun("young", "r1") is not None
    assert [store.purge_expired(batch=2) for _ in range(3)] == [2, 1, 0]
    assert stored_marks(store) == {("young", "r1")}


@pytest.mark.parametrize("write", [claim, trigger], ids=["mark_pending", "record"])
def test_a_new_claim_of_an_expired_key_drops_only_its_old_lifes_reruns(
    store: IdempotencyStore, clock: ManualClock, write: Callable[[IdempotencyStore, str], object]
) -> None:
    """Writing an expired key's entry anew forgets the marks of its ended life, not newer ones."""
    trigger(store, "k1")
    clock.advance(timedelta(days=6))
    store.mark_rerun("k1", "old-life", evidence="clock-1", at=AT)
    clock.advance(timedelta(days=1, seconds=1))  # k1's entry has expired
    assert store.get_rerun("k1", "old-life") is None
    newer = store.mark_rerun("k1", "next-life", evidence=None, at=LATER_AT)

    write(store, "k1")

    assert stored_marks(store) == {("k1", "next-life")}
    assert store.get_rerun("k1", "next-life") == newer
    assert store.mark_rerun("k1", "old-life", evidence="clock-2", at=LATER_AT).claimed_here


def test_a_dead_mark_is_claimed_anew(store: IdempotencyStore, clock: ManualClock) -> None:
    """A mark past the retention window is replaced by the next mark, which claims it here."""
    store.mark_rerun("k1", "r1", evidence="clock-1", at=AT)
    clock.advance(RETENTION + timedelta(seconds=1))
    assert store.get_rerun("k1", "r1") is None

    fresh = store.mark_rerun("k1", "r1", evidence="clock-2", at=LATER_AT)

    assert fresh.claimed_here
    assert (fresh.evidence, fresh.at, fresh.created_at) == ("clock-2", LATER_AT, clock.now)
    store.record_rerun("k1", "r1", run_state="queued", at=LATER_AT)
    assert store.get_rerun("k1", "r1") == RerunMark(
        "k1", "r1", RerunStatus.DONE, "clock-2", LATER_AT, "queued", clock.now
    )


@pytest.mark.parametrize("rerun_id", ["", "x" * 129])
def test_a_rerun_id_outside_1_to_128_characters_is_refused(
    store: IdempotencyStore, rerun_id: str
) -> None:
    """The table refuses an empty or over-long rerun id: a bug of the caller, never held."""
    refused = (sqlite3.IntegrityError, psycopg.errors.CheckViolation)
    with pytest.raises(refused):
        store.mark_rerun("k1", rerun_id, evidence=None, at=AT)
    with pytest.raises(refused):
        store.record_rerun("k1", rerun_id, run_state=None, at=AT)
    assert store.mark_rerun("k1", "x" * 128, evidence=None, at=AT).claimed_here
