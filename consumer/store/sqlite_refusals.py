"""Remembered refusals in the SQLite file: released with their key, kept beyond it.

``SqliteStore`` runs these inside its ``BEGIN IMMEDIATE`` transactions (``select`` under its
lock alone). A refusal is written by the ``release`` of the key its record named and read
back by the record's coordinates; it outlives the key's entry (another request may hold the
key by then) and is hidden, then purged, once older than the retention window, counted from
its own ``created_at`` (``postgres_refusals`` keeps the same rules).
"""

from __future__ import annotations

import sqlite3

from consumer.store import sqlite_reruns
from consumer.store.entry import Coordinates, RememberedRefusal
from consumer.store.rows import REFUSAL_COLUMNS, details_text
from consumer.store.sqlite_reruns import UNLIMITED
from consumer.store.sqlite_schema import refusal_from_row

_AT = "key = ? AND source_topic = ? AND source_partition = ? AND source_offset = ?"
_SELECT = (
    f"SELECT {REFUSAL_COLUMNS} FROM refusals"  # noqa: S608 -- constants
    f" WHERE {_AT} AND created_at >= ?"
)
# the second answer for one record wins, and its created_at starts the window anew
_REMEMBER = (
    f"INSERT OR REPLACE INTO refusals ({REFUSAL_COLUMNS})"  # noqa: S608 -- constants
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_PURGE = (
    "DELETE FROM refusals WHERE rowid IN (SELECT rowid FROM refusals WHERE created_at < ? LIMIT ?)"
)


def release(
    cur: sqlite3.Cursor, key: str, refusal: RememberedRefusal | None, *, now: float
) -> bool:
    """Delete ``key``'s entry and re-run marks; remember ``refusal`` (an upsert) if given.

    Args:
        cur: a cursor inside a write transaction.
        key: the idempotency key.
        refusal: the answer of the record that releases the key, or None; its
            ``created_at`` is replaced by ``now``.
        now: the call's time, epoch seconds.

    Returns:
        Whether an entry was removed.

    Raises:
        ValueError: ``refusal`` names another key.
        TypeError: its details are not JSON-serializable.
    """
    if refusal is not None:
        if refusal.key != key:
            raise ValueError(f"refusal of {refusal.key!r} given to the release of {key!r}")
        values = (key, *refusal.at, refusal.code, refusal.message, details_text(refusal), now)
        cur.execute(_REMEMBER, values)
    sqlite_reruns.forget(cur, key)
    return cur.execute("DELETE FROM idempotency WHERE key = ?", (key,)).rowcount > 0


def select(
    cur: sqlite3.Cursor, key: str, at: Coordinates, *, cutoff: float
) -> RememberedRefusal | None:
    """Return the refusal remembered for ``key`` at ``at``, or None (unknown or too old).

    Args:
        cur: a cursor of the store's connection.
        key: the idempotency key.
        at: the record's (topic, partition, offset).
        cutoff: the retention cut-off, epoch seconds.

    Returns:
        The refusal, or None.
    """
    row = cur.execute(_SELECT, (key, *at, cutoff)).fetchone()
    return None if row is None else refusal_from_row(row)


def purge(cur: sqlite3.Cursor, cutoff: float, limit: int = UNLIMITED) -> int:
    """Delete up to ``limit`` refusals remembered before ``cutoff``.

    Args:
        cur: a cursor inside a write transaction.
        cutoff: refusals created before it go, epoch seconds.
        limit: the most refusals deleted; ``UNLIMITED`` for all.

    Returns:
        How many refusals were deleted.
    """
    return cur.execute(_PURGE, (cutoff, limit)).rowcount
