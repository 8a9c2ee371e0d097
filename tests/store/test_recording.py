"""Tests of consumer/store/recording.py: PostgreSQL's RECORD statement mirrors the pure rules.

A differential test over every case: the same history recorded on SQLite (which applies
``may_overwrite``, ``records_run`` and ``kept_for_run`` in Python) and on PostgreSQL (whose
one upsert statement mirrors them in SQL) must leave the same entry behind.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite import SqliteStore

RETENTION = timedelta(days=7)
A = RequestOrigin("requests", 0, 10, None, "a", "team-a")
B = RequestOrigin("requests", 1, 20, None, "b", "team-b")
START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A settable clock for both stores."""

    def __init__(self) -> None:
        """Start at ``START``."""
        self.now = START

    def __call__(self) -> datetime:
        """The current time."""
        return self.now


class Case(NamedTuple):
    """One history: what the key holds, then one ``record``."""

    existing: EntryStatus | str | None  # None, "pending", or a final status
    completed: bool
    leased: bool
    expired: bool  # the existing entry is past retention when recorded again
    status: EntryStatus
    run: str  # the same run ("r1") or another one
    origin: RequestOrigin | None  # the same, another or unknown coordinates


def replay(store: IdempotencyStore, clock: Clock, case: Case) -> tuple[Any, ...]:
    """Apply ``case`` to an empty ``store``; what the entry and its tracking then say."""
    key = "k"
    if case.existing == "pending":
        store.mark_pending(key, fingerprint="fp", dag_id="d", dag_run_id="r1", origin=A)
    elif isinstance(case.existing, EntryStatus):
        store.record(
            key, fingerprint="fp", dag_id="d", dag_run_id="r1", status=case.existing,
            run_state="running", track=True, origin=A,
        )  # fmt: skip
        if case.leased:
            store.lease_tracked("owner", timedelta(hours=1))
        if case.completed:
            store.mark_completed(key, "success")
    clock.now += RETENTION + timedelta(seconds=1) if case.expired else timedelta(seconds=5)
    got = store.record(
        key, fingerprint="fp", dag_id="d", dag_run_id=case.run, status=case.status,
        run_state="queued", track=True, origin=case.origin,
    )  # fmt: skip
    held = store.renew_leases("owner", timedelta(hours=1), [key])
    tracked = [entry.key for entry in store.tracked_runs()]
    return (
        got.status, got.run_state, got.dag_run_id, got.completed_at is not None,
        got.origin, got.created_at, bool(held), tracked,
    )  # fmt: skip


CASES = [
    case
    for case in itertools.starmap(
        Case,
        itertools.product(
            [None, "pending", EntryStatus.TRIGGERED, EntryStatus.DUPLICATE],
            [False, True],
            [False, True],
            [False, True],
            [EntryStatus.TRIGGERED, EntryStatus.DUPLICATE],
            ["r1", "r2"],
            [A, B, None],
        ),
    )
    if isinstance(case.existing, EntryStatus) or not (case.completed or case.leased)
]


def test_postgres_records_every_case_as_the_pure_rules_do(
    new_database: str, tmp_path: Path
) -> None:
    """Every history leaves the same entry on PostgreSQL as on SQLite (second review)."""
    mismatches = []
    for number, case in enumerate(CASES):
        lite_clock, pg_clock = Clock(), Clock()
        with SqliteStore(tmp_path / f"{number}.db", RETENTION, clock=lite_clock) as lite:
            expected = replay(lite, lite_clock, case)
        postgres = PostgresStore(new_database, RETENTION, clock=pg_clock, pool_size=2)
        try:
            with postgres._pool.connection() as connection:
                connection.execute("DELETE FROM trigger_consumer_idempotency")
            got = replay(postgres, pg_clock, case)
        finally:
            postgres.close()
        if got != expected:
            mismatches.append((case, expected, got))
    assert not mismatches, "\n".join(map(str, mismatches[:10]))
