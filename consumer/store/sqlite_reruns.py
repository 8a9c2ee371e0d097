"""Re-run marks in the SQLite file, and the deletions that forget them with their keys.

``SqliteStore`` runs these inside its ``BEGIN IMMEDIATE`` transactions (``select`` under its
lock alone). A mark lives and dies with its key's entry (``postgres_reruns`` keeps the same
rules)::

    entry of k, created t0 ──► the marks of k written before t0 + retention are its own:
      │                         hidden once it expires, deleted when it is deleted
      │                         (release, purge, a new claim of the expired key)
      └─ expired ──► a mark written now (a re-run of a key with no live run, before
                     its trigger) belongs to the key's next entry

A mark is also hidden once older than the retention window itself; one of a key that has
no entry left is deleted by the purge then.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace

from consumer.store.entry import Coordinates, RequestOrigin, RerunMark, RerunStatus
from consumer.store.recording import RUN_TRACKING
from consumer.store.rows import RERUN_COLUMNS
from consumer.store.sqlite_schema import ORIGIN_COLUMNS, origin_values, rerun_from_row, to_epoch

# named parameters :cutoff and :retention (epoch seconds, seconds); r is the mark
_LIVE = (
    "r.created_at >= :cutoff AND NOT EXISTS (SELECT 1 FROM idempotency i WHERE i.key = r.key"
    " AND i.created_at < :cutoff AND r.created_at < i.created_at + :retention)"
)
_SELECT = (
    f"SELECT {RERUN_COLUMNS} FROM reruns r"  # noqa: S608 -- constant columns
    f" WHERE r.key = :key AND r.rerun_id = :rerun_id AND {_LIVE}"
)
# a dead mark (of an ended life, or too old) is replaced, as a claim replaces an expired entry
_WRITE = (
    f"INSERT OR REPLACE INTO reruns ({RERUN_COLUMNS})"  # noqa: S608 -- constant columns
    f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {RERUN_COLUMNS}"
)
_RETRACK = (
    # created_at too: the re-run's run is tracked (horizon) and kept (retention) from now
    "UPDATE idempotency SET track = 1, run_state = ?, updated_at = ?, created_at = ?, "  # noqa: S608 -- constants
    + ", ".join(f"{name} = NULL" for name in RUN_TRACKING)
    + ", "
    + ", ".join(f"{name.strip()} = ?" for name in ORIGIN_COLUMNS.split(","))
    + " WHERE key = ? AND created_at >= ?"
)
_PURGE_ENTRIES = (
    "DELETE FROM idempotency WHERE key IN"
    " (SELECT key FROM idempotency WHERE created_at < ? LIMIT ?) RETURNING key, created_at"
)
_PURGE_ORPHANS = (
    "DELETE FROM reruns WHERE rowid IN (SELECT rowid FROM reruns r WHERE r.created_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM idempotency i WHERE i.key = r.key) LIMIT ?)"
)
UNLIMITED = -1
"""A ``purge`` limit that deletes every row due (SQLite reads a negative LIMIT as none)."""


@dataclass(frozen=True, slots=True)
class Window:
    """When a store call runs and which marks are live then.

    Attributes:
        now: the call's time, epoch seconds.
        cutoff: the retention cut-off, epoch seconds: older marks and entries are dead.
        retention: the retention window, seconds: the life of an entry, and of its marks.
    """

    now: float
    cutoff: float
    retention: float


def select(cur: sqlite3.Cursor, key: str, rerun_id: str, window: Window) -> RerunMark | None:
    """Return the live mark of ``key`` named ``rerun_id``, or None.

    Args:
        cur: a cursor of the store's connection.
        key: the idempotency key.
        rerun_id: the re-run's id.
        window: the call's time and retention.

    Returns:
        The mark, or None when unknown, dead with its key's entry, or too old.
    """
    params = {
        "key": key,
        "rerun_id": rerun_id,
        "cutoff": window.cutoff,
        "retention": window.retention,
    }
    row = cur.execute(_SELECT, params).fetchone()
    return None if row is None else rerun_from_row(row)


def mark(
    cur: sqlite3.Cursor,
    window: Window,
    key: str,
    rerun_id: str,
    *,
    evidence: str | None,
    at: Coordinates,
) -> RerunMark:
    """Write a pending mark unless a live one holds (key, rerun_id); return the holder.

    Args:
        cur: a cursor inside a write transaction.
        window: the call's time and retention.
        key: the idempotency key.
        rerun_id: the re-run's id.
        evidence: the run's clear evidence read before the clear, or None.
        at: the request record's (topic, partition, offset).

    Returns:
        The live holder, unchanged; or the new mark, with ``claimed_here`` set.
    """
    held = select(cur, key, rerun_id, window)
    if held is not None:
        return held
    status = RerunStatus.PENDING.value
    values = (key, rerun_id, status, evidence, *at, None, window.now)
    row = cur.execute(_WRITE, values).fetchone()
    return replace(rerun_from_row(row), claimed_here=True)


def record(
    cur: sqlite3.Cursor,
    window: Window,
    key: str,
    rerun_id: str,
    *,
    run_state: str | None,
    at: Coordinates,
    track: bool,
    origin: RequestOrigin | None,
) -> None:
    """Write the mark of (key, rerun_id) as done; with ``track``, track the key's run again.

    A live mark keeps its evidence and creation time. With ``track`` the key's live entry
    (if any) is tracked again from scratch (``RUN_TRACKING`` cleared: the old lease ends)
    with ``run_state``, for ``origin``'s completion reply.

    Args:
        cur: a cursor inside a write transaction.
        window: the call's time and retention.
        key: the idempotency key.
        rerun_id: the re-run's id.
        run_state: Airflow's state of the run after the clear, if known.
        at: the recording request record's (topic, partition, offset).
        track: whether the re-run request asked for a completion reply.
        origin: the re-run request's origin, replacing the entry's (with ``track``).
    """
    held = select(cur, key, rerun_id, window)
    evidence = None if held is None else held.evidence
    created = window.now if held is None else to_epoch(held.created_at)
    status = RerunStatus.DONE.value
    cur.execute(_WRITE, (key, rerun_id, status, evidence, *at, run_state, created))
    if track:
        origin_row = origin_values(origin)
        cur.execute(_RETRACK, (run_state, window.now, window.now, *origin_row, key, window.cutoff))


def forget(cur: sqlite3.Cursor, key: str) -> None:
    """Delete every mark of ``key`` (its entry is released).

    Args:
        cur: a cursor inside a write transaction.
        key: the idempotency key.
    """
    cur.execute("DELETE FROM reruns WHERE key = ?", (key,))


def forget_ended_life(cur: sqlite3.Cursor, key: str, window: Window) -> None:
    """Delete the marks of ``key``'s expired entry, which a new claim is about to replace.

    Args:
        cur: a cursor inside a write transaction.
        key: the idempotency key.
        window: the call's time and retention.
    """
    cur.execute(
        "DELETE FROM reruns WHERE key = ? AND created_at < (SELECT created_at + ?"
        " FROM idempotency WHERE key = ? AND created_at < ?)",
        (key, window.retention, key, window.cutoff),
    )


def purge(cur: sqlite3.Cursor, window: Window, limit: int = UNLIMITED) -> int:
    """Delete up to ``limit`` entries created before ``window.cutoff``, with their marks.

    Marks older than the cut-off whose key has no entry go too, up to ``limit`` of them.

    Args:
        cur: a cursor inside a write transaction.
        window: entries and orphaned marks created before its cut-off go.
        limit: the most entries (and orphaned marks) deleted; ``UNLIMITED`` for all.

    Returns:
        How many entries were deleted.
    """
    gone = cur.execute(_PURGE_ENTRIES, (window.cutoff, limit)).fetchall()
    cur.executemany(
        "DELETE FROM reruns WHERE key = ? AND created_at < ?",
        [(key, created + window.retention) for key, created in gone],
    )
    cur.execute(_PURGE_ORPHANS, (window.cutoff, limit))
    return len(gone)
