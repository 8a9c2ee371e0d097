"""Tests of consumer/store/postgres_failures.py: which PostgreSQL errors hold, which are bugs.

The table tests are pure; the rest turn the devstack PostgreSQL read-only under a store.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from consumer.errors import StoreUnavailableError
from consumer.store import EntryStatus, StoredEntry
from consumer.store.failures import Failure
from consumer.store.holds import StoreHold
from consumer.store.postgres import PostgresStore
from consumer.store.postgres_failures import classify_postgres_error
from tests.store.faults import read_only
from tests.waiting import wait_until

HOLD, BUG = Failure.HOLD, Failure.BUG
RETENTION = timedelta(days=7)

# SQLSTATE → verdict: what the operator ends holds; what the statement or its data causes is a bug
BY_SQLSTATE = [
    ("08006", HOLD),  # connection_failure
    ("08001", HOLD),  # sqlclient_unable_to_establish_sqlconnection
    ("25006", HOLD),  # read_only_sql_transaction: failover behind a stale address
    ("28P01", HOLD),  # invalid_password: a password rotated under the pool
    ("40001", HOLD),  # serialization_failure
    ("40P01", HOLD),  # deadlock_detected
    ("42501", HOLD),  # insufficient_privilege: a revoked grant
    ("53100", HOLD),  # disk_full
    ("53200", HOLD),  # out_of_memory
    ("53300", HOLD),  # too_many_connections
    ("55P03", HOLD),  # lock_not_available (lock_timeout)
    ("57014", HOLD),  # query_canceled (statement_timeout, pg_cancel_backend)
    ("57P01", HOLD),  # admin_shutdown
    ("57P02", HOLD),  # crash_shutdown
    ("57P03", HOLD),  # cannot_connect_now (starting up, recovering)
    ("58030", HOLD),  # io_error
    ("XX001", HOLD),  # data_corrupted
    ("22001", BUG),  # string_data_right_truncation
    ("22P02", BUG),  # invalid_text_representation
    ("23502", BUG),  # not_null_violation
    ("23505", BUG),  # unique_violation
    ("25P02", BUG),  # in_failed_sql_transaction: our statements run in autocommit
    ("42601", BUG),  # syntax_error
    ("42703", BUG),  # undefined_column
    ("42P01", HOLD),  # undefined_table: a restore without the tables
    ("3D000", HOLD),  # invalid_catalog_name: the database is gone
    ("54000", BUG),  # program_limit_exceeded: an index row too large, say
    ("55000", BUG),  # object_not_in_prerequisite_state
]


@pytest.mark.parametrize(("sqlstate", "verdict"), BY_SQLSTATE)
def test_server_errors_are_classified_by_sqlstate(sqlstate: str, verdict: Failure) -> None:
    """Each server error's SQLSTATE decides: an outage holds, a data or SQL error is a bug."""
    exc = errors.lookup(sqlstate)("from the server")
    assert exc.sqlstate == sqlstate
    assert classify_postgres_error(exc) is verdict


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), HOLD),
        (PoolTimeout("couldn't get a connection after 30.00 sec"), HOLD),
        (psycopg.InterfaceError("the query has 2 placeholders but 1 parameters"), BUG),
        (psycopg.ProgrammingError("query parameter missing: key"), BUG),
        (psycopg.DataError("cannot dump object"), BUG),
        (ValueError("not a driver error at all"), BUG),
    ],
    ids=["connection-lost", "pool-timeout", "interface", "programming", "data", "other"],
)
def test_errors_without_sqlstate_hold_only_when_operational(
    exc: Exception, verdict: Failure
) -> None:
    """Without a server answer, only an operational error (connection, pool) holds."""
    assert classify_postgres_error(exc) is verdict


def _write_failure(store: PostgresStore, key: str) -> StoreUnavailableError:
    """The StoreUnavailableError of a write; the first may meet a session ended under it."""
    with pytest.raises(StoreUnavailableError) as raised:
        store.mark_pending(key, fingerprint="fp", dag_id="etl", dag_run_id=key)
    return raised.value


def test_writes_to_a_read_only_database_hold_and_reads_go_on(new_database: str) -> None:
    """A primary turned read-only (25006): every write is StoreUnavailableError, not a bug."""
    with PostgresStore(new_database, RETENTION) as store:
        store.mark_pending("before", fingerprint="fp", dag_id="etl", dag_run_id="before")
        with read_only(new_database):
            failures = [_write_failure(store, f"k{n}") for n in range(3)]
            causes = {type(failure.__cause__) for failure in failures}
            assert psycopg.errors.ReadOnlySqlTransaction in causes, causes
            assert "read-only transaction" in str(failures[-1])
            with pytest.raises(StoreUnavailableError):
                store.record(
                    "before",
                    fingerprint="fp",
                    dag_id="etl",
                    dag_run_id="before",
                    status=EntryStatus.TRIGGERED,
                )
            with pytest.raises(StoreUnavailableError):
                store.purge_expired()
            entry = wait_until(lambda: store.get("before"), timeout=30, what="a read")
            assert entry.status is EntryStatus.PENDING
        wait_until(
            lambda: _writes(store, "after"), timeout=30, what="writable again after the reset"
        )


def _writes(store: PostgresStore, key: str) -> bool:
    try:
        store.mark_pending(key, fingerprint="fp", dag_id="etl", dag_run_id=key)
    except StoreUnavailableError:  # a session ended by the reset: the next one writes
        return False
    return True


def test_a_held_write_completes_once_the_database_is_writable_again(new_database: str) -> None:
    """StoreHold waits out a read-only database and returns the write made after it."""
    with PostgresStore(new_database, RETENTION) as store:
        hold = StoreHold(initial_delay=0.05, max_delay=0.2)
        result: list[StoredEntry] = []
        with read_only(new_database):
            writer = threading.Thread(
                target=lambda: result.append(
                    hold.call(
                        lambda: store.mark_pending(
                            "held", fingerprint="fp", dag_id="etl", dag_run_id="held"
                        )
                    )
                )
            )
            writer.start()
            wait_until(lambda: not hold.available, timeout=30, what="the write held")
            assert hold.reason is not None
        writer.join(30)
        assert [entry.key for entry in result] == ["held"]
        assert (hold.available, hold.reason) == (True, None)
