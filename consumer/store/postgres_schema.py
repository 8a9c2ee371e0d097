"""The PostgreSQL store's layout: versioned DDL, its safe upgrade, rows ↔ entries and marks.

``PostgresStore`` runs the statements; this module says what the database holds: the
idempotency table, the re-run marks' table (``postgres_reruns``), the remembered
refusals' table (``postgres_refusals``) and flow control's deferred requests, lease and
rates (``postgres_deferred``). Many
replicas may start at once against one database, so the upgrade runs in one transaction
under a transaction-scoped advisory lock: one replica applies each step, the others wait
and then find the schema current. Steps are additive (new tables, columns, indexes), so
replicas of the previous release keep working while a new one upgrades.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from consumer.errors import ConfigError
from consumer.store import rows
from consumer.store.entry import RememberedRefusal, RequestOrigin, RerunMark, StoredEntry

TABLE = "trigger_consumer_idempotency"
VERSION_TABLE = "trigger_consumer_schema"
RERUNS = "trigger_consumer_reruns"
REFUSALS = "trigger_consumer_refusals"
DEFERRED = "trigger_consumer_deferred"
FLOW_LEASE = "trigger_consumer_flow_lease"
FLOW_RATE = "trigger_consumer_flow_rate"
SCHEMA_VERSION = 5
# any constant shared by every release: the advisory lock that serialises upgrades
UPGRADE_LOCK = 0x7472_6967_6765_72  # "trigger"

_STEPS: dict[int, tuple[str, ...]] = {
    1: (
        f"""CREATE TABLE {TABLE} (
            key                 text PRIMARY KEY,
            fingerprint         text NOT NULL,
            dag_id              text NOT NULL,
            dag_run_id          text NOT NULL,
            status              text NOT NULL,
            run_state           text,
            logical_date        text,
            run_url             text,
            track               boolean NOT NULL DEFAULT false,
            completed_at        timestamptz,
            created_at          timestamptz NOT NULL,
            updated_at          timestamptz NOT NULL,
            correlation_id      text,
            reply_topic         text,
            source_topic        text,
            source_partition    integer,
            source_offset       bigint,
            source_timestamp_ms bigint,
            abandoned_at        timestamptz,
            lease_owner         text,
            lease_until         timestamptz,
            leased_at           timestamptz
        )""",
        f"CREATE INDEX {TABLE}_created_at ON {TABLE} (created_at)",
        f"CREATE INDEX {TABLE}_tracked ON {TABLE} (leased_at NULLS FIRST, created_at)"
        " WHERE track AND completed_at IS NULL AND abandoned_at IS NULL",
    ),
    # routes: the route and trace context a tracked run's ``completed`` reply echoes
    2: (
        f"ALTER TABLE {TABLE} ADD COLUMN route text",
        f"ALTER TABLE {TABLE} ADD COLUMN traceparent text",
        f"ALTER TABLE {TABLE} ADD COLUMN tracestate text",
    ),
    # re-runs (issue 29): one mark per key and rerun id, kept and purged with the key
    3: (
        f"""CREATE TABLE {RERUNS} (
            key              text NOT NULL,
            rerun_id         text NOT NULL CHECK (char_length(rerun_id) BETWEEN 1 AND 128),
            status           text NOT NULL,
            evidence         text,
            source_topic     text NOT NULL,
            source_partition integer NOT NULL,
            source_offset    bigint NOT NULL,
            run_state        text,
            created_at       timestamptz NOT NULL,
            PRIMARY KEY (key, rerun_id)
        )""",
        f"CREATE INDEX {RERUNS}_created_at ON {RERUNS} (created_at)",
    ),
    # remembered refusals (nemesis seed 303): one answer per key and record, kept beyond
    # the key's entry and purged by their own age
    4: (
        f"""CREATE TABLE {REFUSALS} (
            key              text NOT NULL,
            source_topic     text NOT NULL,
            source_partition integer NOT NULL,
            source_offset    bigint NOT NULL,
            code             text NOT NULL,
            message          text NOT NULL,
            details          text NOT NULL,
            created_at       timestamptz NOT NULL,
            PRIMARY KEY (key, source_topic, source_partition, source_offset)
        )""",
        f"CREATE INDEX {REFUSALS}_created_at ON {REFUSALS} (created_at)",
    ),
    # flow control (issue 30): requests deferred until their DAG's limits or not_before
    # allow them, the one lease of the replica that releases them, each DAG's rate state
    5: (
        f"""CREATE TABLE {DEFERRED} (
            seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key                 text NOT NULL,
            dag_id              text NOT NULL,
            fingerprint         text NOT NULL,
            request_json        text NOT NULL,
            source_topic        text NOT NULL,
            source_partition    integer NOT NULL,
            source_offset       bigint NOT NULL,
            source_timestamp_ms bigint,
            record_key          bytea,
            record_value        bytea,
            headers             text NOT NULL,
            route               text,
            traceparent         text,
            tracestate          text,
            reason              text NOT NULL,
            due_at              timestamptz,
            released            boolean NOT NULL DEFAULT false,
            created_at          timestamptz NOT NULL,
            UNIQUE (key, source_topic, source_partition, source_offset)
        )""",
        f"CREATE INDEX {DEFERRED}_by_dag ON {DEFERRED} (dag_id, seq)",
        f"""CREATE TABLE {FLOW_LEASE} (
            name        text PRIMARY KEY,
            lease_owner text NOT NULL,
            lease_until timestamptz NOT NULL
        )""",
        f"CREATE TABLE {FLOW_RATE} (dag_id text PRIMARY KEY, next_at timestamptz NOT NULL)",
    ),
}
"""Version → the statements that upgrade the previous version to it."""

ENTRY_COLUMNS = (
    "key",
    "fingerprint",
    "dag_id",
    "dag_run_id",
    "status",
    "run_state",
    "logical_date",
    "run_url",
    "track",
    "completed_at",
    "created_at",
    "updated_at",
    "correlation_id",
    "reply_topic",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_timestamp_ms",
    "abandoned_at",
    "route",
    "traceparent",
    "tracestate",
)
COLUMNS = ", ".join(ENTRY_COLUMNS)
"""The entry columns in row order, for SELECT and RETURNING (leases are not entry fields)."""
ORIGIN_COLUMNS = (
    "correlation_id",
    "reply_topic",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_timestamp_ms",
    "route",
    "traceparent",
    "tracestate",
)
"""The entry columns ``origin_params`` fills: a request's origin."""


def open_schema(conn: psycopg.Connection[Any], where: str) -> int:
    """Check the schema at start-up; create or upgrade it only when it is not current.

    A current schema is only read (no lock, no DDL), so a replica starts against a
    read-only primary and holds its writes like a running one (``postgres_failures``).

    Args:
        conn: an autocommit connection.
        where: the database as shown in errors (no password).

    Returns:
        The schema version found (0 for an empty database).

    Raises:
        ConfigError: the database holds a schema newer than ``SCHEMA_VERSION``.
        psycopg.Error: the database failed; a read-only one when DDL is due (SQLSTATE 25006).
    """
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if row is not None and row[0]:
        found = _version(conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone())  # noqa: S608 -- constant name
        _refuse_newer(found, where)
        if found == SCHEMA_VERSION:
            return found
    return apply_schema(conn, where)


def _version(row: tuple[Any, ...] | None) -> int:
    return int(row[0]) if row and row[0] is not None else 0


def _refuse_newer(found: int, where: str) -> None:
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"idempotency store {where} has schema version {found}, newer than this "
            f"release's {SCHEMA_VERSION}. Operator action: upgrade the worker"
        )


def apply_schema(conn: psycopg.Connection[Any], where: str) -> int:
    """Create or upgrade the schema to ``SCHEMA_VERSION``; safe when replicas race.

    Args:
        conn: an autocommit connection; the upgrade is one transaction on it.
        where: the database as shown in errors (no password).

    Returns:
        The schema version found before the call (0 for an empty database).

    Raises:
        ConfigError: the database holds a schema newer than ``SCHEMA_VERSION``.
    """
    with conn.transaction(), conn.cursor() as cur:
        # taken before any DDL: concurrent CREATE TABLE IF NOT EXISTS can still collide
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
        cur.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer NOT NULL)")
        cur.execute(f"SELECT max(version) FROM {VERSION_TABLE}")  # noqa: S608 -- constant name
        found = _version(cur.fetchone())
        _refuse_newer(found, where)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _STEPS[version]:
                cur.execute(statement)
        if found == 0:
            cur.execute(f"INSERT INTO {VERSION_TABLE} VALUES (%s)", (SCHEMA_VERSION,))  # noqa: S608
        elif found < SCHEMA_VERSION:
            cur.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (SCHEMA_VERSION,))  # noqa: S608
    return found


def _utc_instant(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def entry_from_row(row: tuple[Any, ...]) -> StoredEntry:
    """Return the entry that ``row`` (selected as ``COLUMNS``) holds, with UTC datetimes."""
    return rows.entry_from_row(row, _utc_instant)


def rerun_from_row(row: tuple[Any, ...]) -> RerunMark:
    """Return the re-run mark that ``row`` (selected as ``rows.RERUN_COLUMNS``) holds."""
    return rows.rerun_from_row(row, _utc_instant)


def refusal_from_row(row: tuple[Any, ...]) -> RememberedRefusal:
    """Return the refusal that ``row`` (selected as ``rows.REFUSAL_COLUMNS``) holds."""
    return rows.refusal_from_row(row, _utc_instant)


def origin_params(origin: RequestOrigin | None) -> dict[str, Any]:
    """Return ``origin`` as the named parameters of ``ORIGIN_COLUMNS`` (all None without one).

    Args:
        origin: the request origin, or None.

    Returns:
        Column name to value.
    """
    if origin is None:
        return dict.fromkeys(ORIGIN_COLUMNS)
    trace = origin.trace
    return {
        "correlation_id": origin.correlation_id,
        "reply_topic": origin.reply_topic,
        "source_topic": origin.topic,
        "source_partition": origin.partition,
        "source_offset": origin.offset,
        "source_timestamp_ms": origin.timestamp_ms,
        "route": origin.route,
        "traceparent": None if trace is None else trace.traceparent,
        "tracestate": None if trace is None else trace.tracestate,
    }
