"""Tests of the remembered refusals (sqlite_refusals.py, postgres_refusals.py) on both stores.

Every test taking ``store`` runs on SqliteStore and on PostgresStore (the contract suite of
``release(refusal=...)`` and ``refusal_at``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.store import IdempotencyStore, RememberedRefusal
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite import SqliteStore
from tests.store.stores import RETENTION, START, ManualClock, claim

AT = ("requests", 0, 7)
LATER_AT = ("requests", 0, 12)
# the created_at a caller passes is ignored: the store stamps its own clock
IGNORED = datetime(2000, 1, 1, tzinfo=UTC)


def refusal(
    key: str = "k1",
    at: tuple[str, int, int] = AT,
    *,
    code: str = "dag_not_allowed",
    message: str = "DAG 'etl' is not allowed",
    details: dict[str, Any] | None = None,
) -> RememberedRefusal:
    """A refusal of the record at ``at`` naming ``key``, by default a nested dag_not_allowed."""
    if details is None:
        details = {"dag_id": "etl", "allowed": ["reports_*"], "depth": {"n": 1}}
    return RememberedRefusal(key, at, code, message, details, created_at=IGNORED)


def stored_refusals(store: IdempotencyStore) -> set[tuple[str, int]]:
    """Every (key, offset) refusal row the store's database holds, hidden ones too."""
    if isinstance(store, SqliteStore):
        return set(store._conn.execute("SELECT key, source_offset FROM refusals").fetchall())
    assert isinstance(store, PostgresStore)
    with store._pool.connection() as conn:
        sql = "SELECT key, source_offset FROM trigger_consumer_refusals"
        rows = conn.execute(sql).fetchall()
    return {(str(key), int(offset)) for key, offset in rows}


def test_a_released_refusal_reads_back_for_its_key_and_record(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Releasing with a refusal forgets the key; refusal_at returns it, stamped by the store."""
    claim(store, "k1")
    clock.advance(timedelta(seconds=3))

    assert store.release("k1", refusal=refusal()) is True

    assert store.get("k1") is None
    assert store.refusal_at("k1", AT) == RememberedRefusal(
        key="k1",
        at=AT,
        code="dag_not_allowed",
        message="DAG 'etl' is not allowed",
        details={"dag_id": "etl", "allowed": ["reports_*"], "depth": {"n": 1}},
        created_at=START + timedelta(seconds=3),
    )


def test_a_release_of_an_unheld_key_still_remembers_its_refusal(store: IdempotencyStore) -> None:
    """A key without an entry (never claimed, or purged) is released False; the answer is kept."""
    assert store.release("k1", refusal=refusal()) is False

    found = store.refusal_at("k1", AT)
    assert found is not None
    assert (found.code, found.at, found.created_at) == ("dag_not_allowed", AT, START)


def test_another_key_or_other_coordinates_find_nothing(store: IdempotencyStore) -> None:
    """refusal_at matches the key and all three coordinates; any other is None."""
    store.release("k1", refusal=refusal())

    assert store.refusal_at("k2", AT) is None
    assert store.refusal_at("k1", ("other", 0, 7)) is None
    assert store.refusal_at("k1", ("requests", 1, 7)) is None
    assert store.refusal_at("k1", LATER_AT) is None


def test_the_refusal_outlives_the_key_taken_by_another_request(store: IdempotencyStore) -> None:
    """A request of another fingerprint claiming the released key leaves the refusal in place."""
    claim(store, "k1", fingerprint="fp-refused")
    store.release("k1", refusal=refusal())

    taken = claim(store, "k1", fingerprint="fp-corrected")

    assert taken.claimed_here
    assert taken.fingerprint == "fp-corrected"
    found = store.refusal_at("k1", AT)
    assert found is not None
    assert found.code == "dag_not_allowed"


def test_releasing_twice_keeps_the_second_answer(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """A second release for the same key and record upserts: its code, details and time win."""
    store.release("k1", refusal=refusal())
    clock.advance(timedelta(minutes=1))

    second = refusal(code="invalid_field", message="conf too deep", details={"field": "conf"})
    store.release("k1", refusal=second)

    assert store.refusal_at("k1", AT) == RememberedRefusal(
        "k1", AT, "invalid_field", "conf too deep", {"field": "conf"}, START + timedelta(minutes=1)
    )
    assert stored_refusals(store) == {("k1", 7)}


def test_a_release_without_refusal_remembers_nothing(store: IdempotencyStore) -> None:
    """A plain release writes no refusal, and leaves a remembered one of another record alone."""
    store.release("k1", refusal=refusal(at=LATER_AT))
    claim(store, "k1")

    assert store.release("k1") is True

    assert store.refusal_at("k1", AT) is None
    assert store.refusal_at("k1", LATER_AT) is not None
    assert stored_refusals(store) == {("k1", 12)}


def test_a_refusal_of_another_key_is_a_caller_bug(store: IdempotencyStore) -> None:
    """A release given a refusal naming another key raises ValueError and keeps the entry."""
    claim(store, "k1")

    with pytest.raises(ValueError, match="k2"):
        store.release("k1", refusal=refusal(key="k2"))

    assert store.get("k1") is not None
    assert stored_refusals(store) == set()


def test_a_refusal_older_than_the_retention_is_hidden(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Past the retention window, counted from its own created_at, refusal_at returns None."""
    store.release("k1", refusal=refusal())
    clock.advance(RETENTION)
    assert store.refusal_at("k1", AT) is not None

    clock.advance(timedelta(seconds=1))

    assert store.refusal_at("k1", AT) is None


def test_purge_deletes_old_refusals_and_keeps_fresh_ones(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """purge(older_than) deletes the refusals created before it, counted with the entries."""
    claim(store, "old-entry")
    store.release("old", refusal=refusal(key="old"))
    clock.advance(timedelta(hours=1))
    store.release("young", refusal=refusal(key="young"))

    assert store.purge(START + timedelta(minutes=30)) == 2

    assert stored_refusals(store) == {("young", 7)}
    assert store.refusal_at("young", AT) is not None


def test_purge_expired_deletes_refusals_within_the_batch_after_the_entries(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """purge_expired(batch) deletes entries first, then refusals, at most batch rows a call."""
    for index in range(2):
        claim(store, f"old-entry{index}")
    for index in range(3):
        store.release(f"old{index}", refusal=refusal(key=f"old{index}"))
    clock.advance(timedelta(days=1))
    store.release("young", refusal=refusal(key="young"))
    clock.advance(RETENTION)

    assert [store.purge_expired(batch=2) for _ in range(4)] == [2, 2, 1, 0]

    assert stored_refusals(store) == {("young", 7)}
    assert store.refusal_at("young", AT) is not None
