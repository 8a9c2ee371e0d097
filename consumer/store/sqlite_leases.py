"""Tracked runs in the SQLite file: which are tracked, who watches one and until when.

``SqliteStore`` runs these inside its ``BEGIN IMMEDIATE`` transactions (``tracked`` under its
lock alone); the lease columns are no entry fields (``sqlite_schema.COLUMNS`` leaves them out).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from consumer.store.entry import EntryStatus, StoredEntry
from consumer.store.sqlite_schema import COLUMNS, entry_from_row

READ_BATCH = 500  # keys per statement: far below SQLite's bound on bound parameters
_STILL_TRACKED = (
    "track = 1 AND completed_at IS NULL AND abandoned_at IS NULL"
    " AND status != ? AND created_at >= ?"
)
# live tracked runs whose lease is free, expired or the asker's own, least recently leased
_DUE = (
    f"SELECT key FROM idempotency WHERE {_STILL_TRACKED}"  # noqa: S608 -- constants
    " AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)"
    " ORDER BY leased_at IS NOT NULL, leased_at, created_at, key LIMIT ?"
)
_HELD_BY = "(? IS NULL OR lease_owner = ?)"  # the owner twice: None marks whoever holds it


def tracked(cur: sqlite3.Cursor, *, cutoff: float, limit: int) -> list[StoredEntry]:
    """Return live tracked entries whose run is not yet seen complete, oldest first.

    Args:
        cur: a cursor of the store's connection.
        cutoff: the retention cut-off, epoch seconds.
        limit: at most this many entries.

    Returns:
        The entries, by creation time then key.
    """
    rows = cur.execute(
        f"SELECT {COLUMNS} FROM idempotency WHERE {_STILL_TRACKED}"  # noqa: S608 -- constants
        " ORDER BY created_at, key LIMIT ?",
        (EntryStatus.PENDING.value, cutoff, limit),
    ).fetchall()
    return [entry_from_row(row) for row in rows]


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
        f" WHERE key IN ({_DUE}) RETURNING {COLUMNS}",
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


def complete(
    cur: sqlite3.Cursor,
    key: str,
    run_state: str,
    *,
    owner: str | None,
    now: float,
    cutoff: float,
) -> bool:
    """Note that the tracked run of ``key`` reached ``run_state``; end its lease.

    Args:
        cur: a cursor inside a write transaction.
        key: the idempotency key.
        run_state: Airflow's final state of the run.
        owner: only while this process holds the key's lease; None: whoever holds it.
        now: the current time, epoch seconds.
        cutoff: the retention cut-off, epoch seconds.

    Returns:
        Whether a live entry was updated.
    """
    updated = cur.execute(
        "UPDATE idempotency SET run_state = ?, completed_at = ?, updated_at = ?,"  # noqa: S608 -- constants
        " lease_owner = NULL, lease_until = NULL WHERE key = ? AND created_at >= ?"
        f" AND {_HELD_BY}",
        (run_state, now, now, key, cutoff, owner, owner),
    )
    return updated.rowcount > 0


def abandon(cur: sqlite3.Cursor, key: str, *, owner: str | None, now: float, cutoff: float) -> bool:
    """Stop tracking the run of ``key`` without it being seen complete; end its lease.

    Args:
        cur: a cursor inside a write transaction.
        key: the idempotency key.
        owner: only while this process holds the key's lease; None: whoever holds it.
        now: the current time, epoch seconds.
        cutoff: the retention cut-off, epoch seconds.

    Returns:
        Whether a live entry was updated.
    """
    updated = cur.execute(
        "UPDATE idempotency SET abandoned_at = ?, updated_at = ?,"  # noqa: S608 -- constants
        " lease_owner = NULL, lease_until = NULL"
        f" WHERE key = ? AND created_at >= ? AND {_HELD_BY}",
        (now, now, key, cutoff, owner, owner),
    )
    return updated.rowcount > 0


def release_all(cur: sqlite3.Cursor, owner: str) -> int:
    """Give up every lease ``owner`` holds.

    Args:
        cur: a cursor inside a write transaction.
        owner: the process id given to ``lease``.

    Returns:
        How many leases were released.
    """
    return cur.execute(
        "UPDATE idempotency SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
        (owner,),
    ).rowcount
