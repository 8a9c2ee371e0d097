"""Tracking leases in the SQLite file: who watches a tracked run, until when (one host's clock).

``SqliteStore`` runs these inside its ``BEGIN IMMEDIATE`` transactions; the lease columns
are no entry fields (``sqlite_schema.COLUMNS`` leaves them out).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from consumer.store import EntryStatus, StoredEntry
from consumer.store.sqlite_schema import COLUMNS, TRACKED_DUE, entry_from_row

READ_BATCH = 500  # keys per statement: far below SQLite's bound on bound parameters
_STILL_TRACKED = (
    "track = 1 AND completed_at IS NULL AND abandoned_at IS NULL"
    " AND status != ? AND created_at >= ?"
)


def lease(
    cur: sqlite3.Cursor, owner: str, *, now: float, until: float, cutoff: float, limit: int
) -> list[StoredEntry]:
    """Lease up to ``limit`` due tracked runs to ``owner`` until ``until``; oldest first.

    Args:
        cur: a cursor inside a write transaction.
        owner: the leasing process's id.
        now: the current time, epoch seconds.
        until: when the leases end, epoch seconds.
        cutoff: the retention cut-off, epoch seconds.
        limit: at most this many entries.

    Returns:
        The leased entries.
    """
    rows = cur.execute(
        f"UPDATE idempotency SET lease_owner = ?, lease_until = ?, leased_at = ?"  # noqa: S608 -- constant columns
        f" WHERE key IN ({TRACKED_DUE}) RETURNING {COLUMNS}",
        (owner, until, now, EntryStatus.PENDING.value, cutoff, now, owner, limit),
    ).fetchall()
    return sorted((entry_from_row(row) for row in rows), key=lambda e: (e.created_at, e.key))


def renew(
    cur: sqlite3.Cursor, owner: str, keys: Sequence[str], *, until: float, cutoff: float
) -> set[str]:
    """Extend ``owner``'s leases on ``keys`` to at least ``until``; return the keys it holds.

    Args:
        cur: a cursor inside a write transaction.
        owner: the process id given to ``lease``.
        keys: distinct idempotency keys.
        until: the earliest end of the renewed leases, epoch seconds.
        cutoff: the retention cut-off, epoch seconds.

    Returns:
        The keys ``owner`` still holds and that are still tracked.
    """
    held: set[str] = set()
    for start in range(0, len(keys), READ_BATCH):
        chunk = keys[start : start + READ_BATCH]
        marks = ",".join("?" * len(chunk))
        rows = cur.execute(
            "UPDATE idempotency SET lease_until = max(coalesce(lease_until, 0), ?)"  # noqa: S608 -- ? marks
            f" WHERE key IN ({marks}) AND lease_owner = ? AND {_STILL_TRACKED}"
            " RETURNING key",
            (until, *chunk, owner, EntryStatus.PENDING.value, cutoff),
        ).fetchall()
        held.update(str(row[0]) for row in rows)
    return held
