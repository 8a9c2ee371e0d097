"""Tests of consumer/store/sqlite_schema.py: stamping, migrating and refusing schema versions."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumer.errors import ConfigError, StoreUnavailableError
from consumer.store import EntryStatus, RememberedRefusal, RequestOrigin, RerunStatus
from consumer.store.deferred import DeferralReason, DeferredRequest
from consumer.store.sqlite import SqliteStore
from consumer.store.sqlite_schema import SCHEMA_VERSION
from tests.store.origins import assert_upgrade_kept_old_origin_and_stores_route_and_trace

RETENTION = timedelta(days=7)
START = datetime(2025, 1, 1, tzinfo=UTC)


def test_version_1_file_is_migrated_keeping_its_entries(db_path: Path) -> None:
    """A schema version 1 file gains the origin and abandon columns; its entries stay tracked."""
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.executescript(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);"
            "INSERT INTO schema_version VALUES (1);"
            "CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
            " dag_id TEXT NOT NULL, dag_run_id TEXT NOT NULL, status TEXT NOT NULL,"
            " run_state TEXT, logical_date TEXT, run_url TEXT,"
            " track INTEGER NOT NULL DEFAULT 0, completed_at REAL,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL);"
        )
        now = datetime.now(UTC).timestamp()
        raw.execute(
            "INSERT INTO idempotency VALUES ('k1', 'fp-1', 'etl', 'run-k1', 'triggered',"
            " 'queued', NULL, NULL, 1, NULL, ?, ?)",
            (now, now),
        )

    with SqliteStore(db_path, RETENTION) as migrated:
        assert migrated.schema_version() == SCHEMA_VERSION == 7
        tracked = migrated.tracked_runs()

    assert [(e.key, e.origin, e.abandoned_at) for e in tracked] == [("k1", None, None)]


# the file schema version 3 wrote (before routes kept route and trace context)
VERSION_3 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (3);
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, dag_id TEXT NOT NULL,
    dag_run_id TEXT NOT NULL, status TEXT NOT NULL, run_state TEXT, logical_date TEXT,
    run_url TEXT, track INTEGER NOT NULL DEFAULT 0, completed_at REAL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, correlation_id TEXT, reply_topic TEXT,
    source_topic TEXT, source_partition INTEGER, source_offset INTEGER,
    source_timestamp_ms INTEGER, abandoned_at REAL, lease_owner TEXT, lease_until REAL,
    leased_at REAL
);
CREATE INDEX idempotency_created_at ON idempotency (created_at);
CREATE INDEX idempotency_tracked ON idempotency (created_at)
    WHERE track = 1 AND completed_at IS NULL;
CREATE INDEX idempotency_leased ON idempotency (leased_at)
    WHERE track = 1 AND completed_at IS NULL AND abandoned_at IS NULL;
"""


def test_version_3_file_gains_route_and_trace_columns_its_entries_without_them(
    db_path: Path,
) -> None:
    """A version 3 file is migrated: its tracked entry keeps its origin, with no route or trace."""
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.executescript(VERSION_3)
        now = datetime.now(UTC).timestamp()
        raw.execute(
            "INSERT INTO idempotency (key, fingerprint, dag_id, dag_run_id, status, track,"
            " created_at, updated_at, correlation_id, reply_topic, source_topic,"
            " source_partition, source_offset, source_timestamp_ms)"
            " VALUES ('k1', 'fp-1', 'etl', 'run-k1', 'triggered', 1, ?, ?, 'corr-1', NULL,"
            " 'requests', 2, 41, NULL)",
            (now, now),
        )

    with SqliteStore(db_path, RETENTION) as migrated:
        assert migrated.schema_version() == SCHEMA_VERSION == 7
        assert_upgrade_kept_old_origin_and_stores_route_and_trace(migrated)


# the file schema version 4 wrote (before re-runs had their table)
VERSION_4 = VERSION_3.replace("VALUES (3)", "VALUES (4)").replace(
    "leased_at REAL\n", "leased_at REAL, route TEXT, traceparent TEXT, tracestate TEXT\n"
)


def test_version_4_file_gains_the_reruns_table_keeping_its_entries(db_path: Path) -> None:
    """A version 4 file is migrated: its entry reads back as it was, and re-runs can be marked."""
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.executescript(VERSION_4)
        now = datetime.now(UTC).timestamp()
        raw.execute(
            "INSERT INTO idempotency (key, fingerprint, dag_id, dag_run_id, status, track,"
            " created_at, updated_at, source_topic, source_partition, source_offset, route)"
            " VALUES ('k1', 'fp-1', 'etl', 'run-k1', 'triggered', 1, ?, ?, 'requests', 2, 41,"
            " 'orders')",
            (now, now),
        )

    with SqliteStore(db_path, RETENTION) as migrated:
        assert migrated.schema_version() == SCHEMA_VERSION == 7
        (entry,) = migrated.tracked_runs()
        marked = migrated.mark_rerun("k1", "r1", evidence="clock", at=("requests", 2, 50))
        assert migrated.get_rerun("k1", "r1") == marked

    assert (entry.key, entry.dag_run_id, entry.status) == ("k1", "run-k1", EntryStatus.TRIGGERED)
    assert entry.origin == RequestOrigin("requests", 2, 41, None, route="orders")
    assert marked.claimed_here


# the file schema version 5 wrote (before refusals were remembered)
VERSION_5 = VERSION_4.replace("VALUES (4)", "VALUES (5)") + (
    "CREATE TABLE reruns (key TEXT NOT NULL, rerun_id TEXT NOT NULL"
    " CHECK (length(rerun_id) BETWEEN 1 AND 128), status TEXT NOT NULL, evidence TEXT,"
    " source_topic TEXT NOT NULL, source_partition INTEGER NOT NULL,"
    " source_offset INTEGER NOT NULL, run_state TEXT, created_at REAL NOT NULL,"
    " PRIMARY KEY (key, rerun_id));"
    "CREATE INDEX reruns_created_at ON reruns (created_at);"
)


def test_version_5_file_gains_the_refusals_table_keeping_its_rows(db_path: Path) -> None:
    """A version 5 file is migrated: its entry and re-run mark stay, refusals can be remembered."""
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.executescript(VERSION_5)
        now = datetime.now(UTC).timestamp()
        raw.execute(
            "INSERT INTO idempotency (key, fingerprint, dag_id, dag_run_id, status, track,"
            " created_at, updated_at) VALUES ('k1', 'fp-1', 'etl', 'run-k1', 'triggered', 0, ?, ?)",
            (now, now),
        )
        raw.execute(
            "INSERT INTO reruns VALUES ('k1', 'r1', 'done', NULL, 'requests', 2, 50, 'queued', ?)",
            (now,),
        )
    refused = RememberedRefusal("k2", ("requests", 2, 51), "dag_not_allowed", "no", {}, START)

    with SqliteStore(db_path, RETENTION) as migrated:
        assert migrated.schema_version() == SCHEMA_VERSION == 7
        entry = migrated.get("k1")
        mark = migrated.get_rerun("k1", "r1")
        migrated.release("k2", refusal=refused)
        found = migrated.refusal_at("k2", ("requests", 2, 51))

    assert entry is not None and (entry.dag_run_id, entry.status) == (
        "run-k1",
        EntryStatus.TRIGGERED,
    )
    assert mark is not None and (mark.status, mark.run_state) == (RerunStatus.DONE, "queued")
    assert found is not None and (found.code, found.details) == ("dag_not_allowed", {})


# the file schema version 6 wrote (before flow control deferred requests)
VERSION_6 = VERSION_5.replace("VALUES (5)", "VALUES (6)") + (
    "CREATE TABLE refusals (key TEXT NOT NULL, source_topic TEXT NOT NULL,"
    " source_partition INTEGER NOT NULL, source_offset INTEGER NOT NULL, code TEXT NOT NULL,"
    " message TEXT NOT NULL, details TEXT NOT NULL, created_at REAL NOT NULL,"
    " PRIMARY KEY (key, source_topic, source_partition, source_offset));"
    "CREATE INDEX refusals_created_at ON refusals (created_at);"
)


def test_version_6_file_gains_the_flow_tables_keeping_its_rows(db_path: Path) -> None:
    """A version 6 file is migrated in place: its rows stay, requests can be deferred and leased."""
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.executescript(VERSION_6)
        now = datetime.now(UTC).timestamp()
        raw.execute(
            "INSERT INTO idempotency (key, fingerprint, dag_id, dag_run_id, status, track,"
            " created_at, updated_at) VALUES ('k1', 'fp-1', 'etl', 'run-k1', 'triggered', 0, ?, ?)",
            (now, now),
        )
        raw.execute(
            "INSERT INTO refusals VALUES"
            " ('k2', 'requests', 2, 51, 'dag_not_allowed', 'no', '{}', ?)",
            (now,),
        )
    header = ("h", b"\x00")
    deferred = DeferredRequest(
        *("k3", "etl", "fp-3", "{}", "requests", 2, 52, None, None, b"v", (header,)),
        *(None, None, None, DeferralReason.LIMIT, None),
    )

    with SqliteStore(db_path, RETENTION) as migrated:
        assert migrated.schema_version() == SCHEMA_VERSION == 7
        entry = migrated.get("k1")
        refused = migrated.refusal_at("k2", ("requests", 2, 51))
        assert migrated.defer(deferred)
        (found,) = migrated.due_deferred()
        assert migrated.take_flow_lease("me", timedelta(minutes=1))

    assert entry is not None and entry.status is EntryStatus.TRIGGERED
    assert refused is not None and refused.code == "dag_not_allowed"
    assert (found.key, found.record_value, found.headers) == ("k3", b"v", (header,))


def test_schema_version_is_recorded_once(db_path: Path) -> None:
    """Opening records the current schema version once, however often the file is reopened."""
    SqliteStore(db_path, RETENTION).close()
    with SqliteStore(db_path, RETENTION) as reopened:
        assert reopened.schema_version() == SCHEMA_VERSION

    with closing(sqlite3.connect(db_path)) as raw:
        assert raw.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_newer_schema_version_is_a_config_error(db_path: Path) -> None:
    """A file written by a newer release is refused with an operator action."""
    SqliteStore(db_path, RETENTION).close()
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="Operator action"):
        SqliteStore(db_path, RETENTION)


def test_current_file_opens_while_another_process_holds_the_write_lock(db_path: Path) -> None:
    """A current schema is only read at start-up: a locked file opens, its writes are held."""
    with SqliteStore(db_path, RETENTION) as first:
        first.mark_pending("k1", fingerprint="fp", dag_id="etl", dag_run_id="r")
    with closing(sqlite3.connect(db_path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")

        with SqliteStore(db_path, RETENTION, busy_timeout_ms=100) as store:
            assert store.get("k1") is not None
            with pytest.raises(StoreUnavailableError, match="locked"):
                store.mark_pending("k2", fingerprint="fp", dag_id="etl", dag_run_id="r2")
            assert store.get_rerun("k1", "r1") is None
            with pytest.raises(StoreUnavailableError, match="locked"):
                store.mark_rerun("k1", "r1", evidence=None, at=("requests", 0, 1))
            with pytest.raises(StoreUnavailableError, match="locked"):
                store.record_rerun("k1", "r1", run_state=None, at=("requests", 0, 1), track=True)
            at = ("requests", 0, 1)
            assert store.refusal_at("k1", at) is None
            refused = RememberedRefusal("k1", at, "dag_not_allowed", "no", {}, START)
            with pytest.raises(StoreUnavailableError, match="locked"):
                store.release("k1", refusal=refused)

        other.execute("ROLLBACK")
