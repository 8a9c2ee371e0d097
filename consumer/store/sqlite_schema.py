"""The SQLite store's layout: versioned DDL, its migration, and rows ↔ entries, marks, refusals.

``SqliteStore`` runs the statements; this module says what the file holds: the
``idempotency`` table, the ``reruns`` table (``sqlite_reruns``), the ``refusals`` table
(``sqlite_refusals``) and the flow control's ``deferred``, ``flow_lease`` and ``flow_rate``
tables (``sqlite_deferred``). Instants are stored as REAL seconds since the epoch, so retention is
one indexed comparison.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import TypeAlias

from consumer.errors import ConfigError
from consumer.store import rows
from consumer.store.entry import RememberedRefusal, RequestOrigin, RerunMark, StoredEntry

SCHEMA_VERSION = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    dag_id       TEXT NOT NULL,
    dag_run_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    run_state    TEXT,
    logical_date TEXT,
    run_url      TEXT,
    track        INTEGER NOT NULL DEFAULT 0,
    completed_at REAL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    correlation_id      TEXT,
    reply_topic         TEXT,
    source_topic        TEXT,
    source_partition    INTEGER,
    source_offset       INTEGER,
    source_timestamp_ms INTEGER,
    abandoned_at        REAL,
    lease_owner         TEXT,
    lease_until         REAL,
    leased_at           REAL,
    route               TEXT,
    traceparent         TEXT,
    tracestate          TEXT
);
CREATE INDEX IF NOT EXISTS idempotency_created_at ON idempotency (created_at);
CREATE INDEX IF NOT EXISTS idempotency_tracked ON idempotency (created_at)
    WHERE track = 1 AND completed_at IS NULL;
CREATE TABLE IF NOT EXISTS reruns (
    key              TEXT NOT NULL,
    rerun_id         TEXT NOT NULL CHECK (length(rerun_id) BETWEEN 1 AND 128),
    status           TEXT NOT NULL,
    evidence         TEXT,
    source_topic     TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset    INTEGER NOT NULL,
    run_state        TEXT,
    created_at       REAL NOT NULL,
    PRIMARY KEY (key, rerun_id)
);
CREATE INDEX IF NOT EXISTS reruns_created_at ON reruns (created_at);
CREATE TABLE IF NOT EXISTS refusals (
    key              TEXT NOT NULL,
    source_topic     TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset    INTEGER NOT NULL,
    code             TEXT NOT NULL,
    message          TEXT NOT NULL,
    details          TEXT NOT NULL,
    created_at       REAL NOT NULL,
    PRIMARY KEY (key, source_topic, source_partition, source_offset)
);
CREATE INDEX IF NOT EXISTS refusals_created_at ON refusals (created_at);
CREATE TABLE IF NOT EXISTS deferred (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    key                 TEXT NOT NULL,
    dag_id              TEXT NOT NULL,
    fingerprint         TEXT NOT NULL,
    request_json        TEXT NOT NULL,
    source_topic        TEXT NOT NULL,
    source_partition    INTEGER NOT NULL,
    source_offset       INTEGER NOT NULL,
    source_timestamp_ms INTEGER,
    record_key          BLOB,
    record_value        BLOB,
    headers             TEXT NOT NULL,
    route               TEXT,
    traceparent         TEXT,
    tracestate          TEXT,
    reason              TEXT NOT NULL,
    due_at              REAL,
    released            INTEGER NOT NULL DEFAULT 0,
    created_at          REAL NOT NULL,
    UNIQUE (key, source_topic, source_partition, source_offset)
);
CREATE INDEX IF NOT EXISTS deferred_by_dag ON deferred (dag_id, seq);
CREATE TABLE IF NOT EXISTS flow_lease (
    name        TEXT PRIMARY KEY,
    lease_owner TEXT NOT NULL,
    lease_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_rate (
    dag_id  TEXT PRIMARY KEY,
    next_at REAL NOT NULL
);
"""
_LEASE_INDEX = (
    "CREATE INDEX IF NOT EXISTS idempotency_leased ON idempotency (leased_at)"
    " WHERE track = 1 AND completed_at IS NULL AND abandoned_at IS NULL"
)

# Schema version 2 (completion tracking) added these columns; a version 1 file gains them
# on open, its entries with NULL origin, so the tracker echoes unknown source coordinates.
_MIGRATION_2 = (
    "ALTER TABLE idempotency ADD COLUMN correlation_id TEXT",
    "ALTER TABLE idempotency ADD COLUMN reply_topic TEXT",
    "ALTER TABLE idempotency ADD COLUMN source_topic TEXT",
    "ALTER TABLE idempotency ADD COLUMN source_partition INTEGER",
    "ALTER TABLE idempotency ADD COLUMN source_offset INTEGER",
    "ALTER TABLE idempotency ADD COLUMN source_timestamp_ms INTEGER",
    "ALTER TABLE idempotency ADD COLUMN abandoned_at REAL",
)
# Schema version 3 (tracking leases shared by replicas): who watches a tracked run, until
# when, and when it was last leased (the fairness order).
_MIGRATION_3 = (
    "ALTER TABLE idempotency ADD COLUMN lease_owner TEXT",
    "ALTER TABLE idempotency ADD COLUMN lease_until REAL",
    "ALTER TABLE idempotency ADD COLUMN leased_at REAL",
)
# Schema version 4 (routes): the route and trace context a tracked run's ``completed`` reply
# echoes; entries written before read back without them.
_MIGRATION_4 = (
    "ALTER TABLE idempotency ADD COLUMN route TEXT",
    "ALTER TABLE idempotency ADD COLUMN traceparent TEXT",
    "ALTER TABLE idempotency ADD COLUMN tracestate TEXT",
)
# Schema version 5 (re-runs, issue 29) adds the ``reruns`` table alone, which ``_SCHEMA``'s
# CREATE IF NOT EXISTS makes in an older file too: nothing in ``idempotency`` changes.
_MIGRATION_5: tuple[str, ...] = ()
# Schema version 6 (remembered refusals, nemesis seed 303) adds the ``refusals`` table alone,
# made the same way.
_MIGRATION_6: tuple[str, ...] = ()
# Schema version 7 (flow control, issue 30) adds the ``deferred``, ``flow_lease`` and
# ``flow_rate`` tables alone, made the same way (AUTOINCREMENT: a deleted seq is never reused).
_MIGRATION_7: tuple[str, ...] = ()

ORIGIN_COLUMNS = (
    "correlation_id, reply_topic, source_topic, source_partition, source_offset,"
    " source_timestamp_ms, route, traceparent, tracestate"
)
"""The columns ``origin_values`` fills, in its order."""

COLUMNS = (
    "key, fingerprint, dag_id, dag_run_id, status, run_state, logical_date, run_url,"
    " track, completed_at, created_at, updated_at, correlation_id, reply_topic,"
    " source_topic, source_partition, source_offset, source_timestamp_ms, abandoned_at,"
    " route, traceparent, tracestate"
)
"""The entry columns of ``idempotency`` in ``Row`` order, for SELECT and full-row INSERT.

The lease columns are not among them: a full-row ``INSERT OR REPLACE`` clears the lease.
"""

Row: TypeAlias = tuple[
    str,
    str,
    str,
    str,
    str,
    str | None,
    str | None,
    str | None,
    int,
    float | None,
    float,
    float,
    str | None,
    str | None,
    str | None,
    int | None,
    int | None,
    int | None,
    float | None,
    str | None,
    str | None,
    str | None,
]
"""One ``idempotency`` row as SQLite returns it for ``SELECT {COLUMNS}``."""


MARK_PENDING = (
    "INSERT OR REPLACE INTO idempotency"  # noqa: S608 -- constant column list
    " (key, fingerprint, dag_id, dag_run_id, status, created_at, updated_at,"
    f" {ORIGIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?,"
    f" {', '.join('?' * len(ORIGIN_COLUMNS.split(',')))})"
)
"""``mark_pending``'s claim: the key, fingerprint, DAG, run, status, created_at,
updated_at, then ``origin_values``.
"""

_RECORDED = (
    "fingerprint, dag_id, dag_run_id, status, run_state, logical_date, run_url, track,"
    f" updated_at, {ORIGIN_COLUMNS}, created_at"
)
RECORD_REPLACE = (
    f"INSERT OR REPLACE INTO idempotency ({_RECORDED}, key)"  # noqa: S608 -- constant columns
    f" VALUES ({', '.join('?' * (len(_RECORDED.split(',')) + 1))})"
)
"""``record`` of a new run: a full-row replace, so tracking and the lease start empty.

Its parameters, like ``RECORD_SAME_RUN``'s: the fingerprint, DAG, run, status, run state,
logical date, run URL, track, updated_at, ``origin_values``, created_at, then the key.
"""
RECORD_SAME_RUN = (
    f"UPDATE idempotency SET {', '.join(f'{c.strip()} = ?' for c in _RECORDED.split(','))}"  # noqa: S608 -- constant columns
    " WHERE key = ?"
)
"""``record`` of the run the entry already records: tracking and the lease are left as they are."""


def schema_is_current(cur: sqlite3.Cursor, path: str) -> bool:
    """Whether the file's schema is ``SCHEMA_VERSION``, read without a write lock.

    A current file is opened without ``apply_schema``'s write transaction, so a worker
    starts on a read-only or locked file and holds its writes like a running one.

    Args:
        cur: a cursor outside any transaction.
        path: the database path, named in the error.

    Returns:
        True when nothing needs creating or migrating.

    Raises:
        ConfigError: the file holds a schema newer than ``SCHEMA_VERSION``.
    """
    exists = cur.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return False
    found = cur.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    _refuse_newer(found, path)
    return bool(found == SCHEMA_VERSION)


def _refuse_newer(found: int | None, path: str) -> None:
    if found is not None and found > SCHEMA_VERSION:
        raise ConfigError(
            f"idempotency store {path!r} has schema version {found}, newer than "
            f"this release's {SCHEMA_VERSION}. Operator action: upgrade the worker "
            "or point TRIGGER_CONSUMER_STORE_URL at another file"
        )


def apply_schema(cur: sqlite3.Cursor, path: str) -> None:
    """Create the tables if missing, stamp a new file, migrate an old one.

    Runs its statements on ``cur`` inside the caller's transaction (``executescript``
    would COMMIT first).

    Args:
        cur: a cursor inside an open transaction.
        path: the database path, named in the error.

    Raises:
        ConfigError: the file holds a schema newer than ``SCHEMA_VERSION``.
    """
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            cur.execute(statement)
    found = cur.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    _refuse_newer(found, path)
    if found is None:
        cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    else:
        steps = {
            1: _MIGRATION_2,
            2: _MIGRATION_3,
            3: _MIGRATION_4,
            4: _MIGRATION_5,
            5: _MIGRATION_6,
            6: _MIGRATION_7,
        }
        for version in range(found, SCHEMA_VERSION):
            for statement in steps[version]:
                cur.execute(statement)
        cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    cur.execute(_LEASE_INDEX)


def to_epoch(moment: datetime) -> float:
    """Return ``moment`` as the stored REAL: seconds since the epoch.

    Args:
        moment: a timezone-aware instant.

    Returns:
        Seconds since the epoch.

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store compares instants, pass UTC")
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    """Return the stored REAL ``seconds`` as a UTC instant (``to_epoch``'s inverse)."""
    return datetime.fromtimestamp(seconds, UTC)


def origin_values(origin: RequestOrigin | None) -> tuple[object, ...]:
    """Return ``origin`` as the values of ``ORIGIN_COLUMNS``, in that order.

    Args:
        origin: the request origin, or None.

    Returns:
        Values for ``correlation_id`` … ``tracestate``, all None without origin.
    """
    if origin is None:
        return (None,) * 9
    trace = origin.trace
    return (
        origin.correlation_id,
        origin.reply_topic,
        origin.topic,
        origin.partition,
        origin.offset,
        origin.timestamp_ms,
        origin.route,
        None if trace is None else trace.traceparent,
        None if trace is None else trace.tracestate,
    )


def entry_from_row(row: Row) -> StoredEntry:
    """Return the entry that ``row`` (selected as ``COLUMNS``) holds, with UTC datetimes."""
    return rows.entry_from_row(row, from_epoch)


def rerun_from_row(row: tuple[object, ...]) -> RerunMark:
    """Return the re-run mark that ``row`` (selected as ``rows.RERUN_COLUMNS``) holds."""
    return rows.rerun_from_row(row, from_epoch)


def refusal_from_row(row: tuple[object, ...]) -> RememberedRefusal:
    """Return the refusal that ``row`` (selected as ``rows.REFUSAL_COLUMNS``) holds."""
    return rows.refusal_from_row(row, from_epoch)
