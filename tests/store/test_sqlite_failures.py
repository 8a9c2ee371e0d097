"""Tests of consumer/store/sqlite_failures.py: which SQLite errors hold, which are bugs.

The table tests are pure or provoke errors on a scratch file; the rest do it under a store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from consumer.errors import StoreUnavailableError
from consumer.store.failures import Failure
from consumer.store.sqlite import SqliteStore
from consumer.store.sqlite_failures import classify_sqlite_error

HOLD, BUG = Failure.HOLD, Failure.BUG


def _coded(kind: type[sqlite3.Error], code: int, name: str) -> sqlite3.Error:
    """An error as the sqlite3 module raises it for a result code we cannot provoke here."""
    exc = kind(name)
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


# result code → verdict, for the codes a test cannot provoke on a healthy disk
BY_CODE = [
    (sqlite3.SQLITE_BUSY, "SQLITE_BUSY", HOLD),
    (sqlite3.SQLITE_BUSY_SNAPSHOT, "SQLITE_BUSY_SNAPSHOT", HOLD),  # extended: its primary counts
    (sqlite3.SQLITE_LOCKED, "SQLITE_LOCKED", HOLD),
    (sqlite3.SQLITE_NOMEM, "SQLITE_NOMEM", HOLD),
    (sqlite3.SQLITE_READONLY, "SQLITE_READONLY", HOLD),
    (sqlite3.SQLITE_READONLY_DBMOVED, "SQLITE_READONLY_DBMOVED", HOLD),
    (sqlite3.SQLITE_IOERR, "SQLITE_IOERR", HOLD),
    (sqlite3.SQLITE_IOERR_WRITE, "SQLITE_IOERR_WRITE", HOLD),
    (sqlite3.SQLITE_IOERR_FSYNC, "SQLITE_IOERR_FSYNC", HOLD),
    (sqlite3.SQLITE_CORRUPT, "SQLITE_CORRUPT", HOLD),
    (sqlite3.SQLITE_FULL, "SQLITE_FULL", HOLD),
    (sqlite3.SQLITE_CANTOPEN, "SQLITE_CANTOPEN", HOLD),
    (sqlite3.SQLITE_PROTOCOL, "SQLITE_PROTOCOL", HOLD),
    (sqlite3.SQLITE_NOTADB, "SQLITE_NOTADB", HOLD),
    (sqlite3.SQLITE_PERM, "SQLITE_PERM", HOLD),
    (sqlite3.SQLITE_ERROR, "SQLITE_ERROR", BUG),
    (sqlite3.SQLITE_CONSTRAINT, "SQLITE_CONSTRAINT", BUG),
    (sqlite3.SQLITE_MISMATCH, "SQLITE_MISMATCH", BUG),
    (sqlite3.SQLITE_MISUSE, "SQLITE_MISUSE", BUG),
    (sqlite3.SQLITE_RANGE, "SQLITE_RANGE", BUG),
    (sqlite3.SQLITE_TOOBIG, "SQLITE_TOOBIG", BUG),
]


@pytest.mark.parametrize(("code", "name", "verdict"), BY_CODE, ids=[n for _, n, _ in BY_CODE])
def test_result_codes_are_classified_by_their_primary_code(
    code: int, name: str, verdict: Failure
) -> None:
    """Locked, busy, read-only, full, I/O and corruption hold; SQL and data errors are bugs."""
    assert classify_sqlite_error(_coded(sqlite3.OperationalError, code, name)) is verdict


def _raised(action: Callable[[sqlite3.Connection], object], path: Path) -> sqlite3.Error:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
    try:
        action(conn)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the action raised nothing")


def _fill(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 3")
    for n in range(10_000):
        conn.execute("INSERT INTO t VALUES (?)", (f"{n:0>200}",))


def _closed(conn: sqlite3.Connection) -> None:
    conn.close()
    conn.execute("SELECT 1")


REAL = [
    ("read-only", lambda c: (c.execute("PRAGMA query_only = 1"), c.execute("DELETE FROM t")), HOLD),
    ("full", _fill, HOLD),
    ("no-such-table", lambda c: c.execute("SELECT * FROM missing"), BUG),
    ("syntax", lambda c: c.execute("SELEC 1"), BUG),
    ("unique", lambda c: c.executemany("INSERT INTO t VALUES (?)", [("a",), ("a",)]), BUG),
    ("bindings", lambda c: c.execute("SELECT ?", (1, 2)), BUG),
    ("closed", _closed, BUG),
]


@pytest.mark.parametrize(("action", "verdict"), [r[1:] for r in REAL], ids=[r[0] for r in REAL])
def test_errors_sqlite_really_raises_are_classified(
    action: Callable[[sqlite3.Connection], object], verdict: Failure, tmp_path: Path
) -> None:
    """Errors provoked on a real database file: read-only and full hold, the rest are bugs."""
    assert classify_sqlite_error(_raised(action, tmp_path / "db.sqlite")) is verdict


def test_operational_error_without_a_code_holds() -> None:
    """An operational error the module raised without a result code holds, as before."""
    assert classify_sqlite_error(sqlite3.OperationalError("unable to open database")) is HOLD


def _claim(store: SqliteStore, key: str) -> None:
    store.mark_pending(key, fingerprint="fp", dag_id="etl", dag_run_id=key)


def test_a_read_only_store_holds_writes_and_still_reads(db_path: Path) -> None:
    """A database that turned read-only (query_only) holds writes; reads and later writes work."""
    with SqliteStore(db_path, timedelta(days=1)) as store:
        _claim(store, "before")
        store._conn.execute("PRAGMA query_only = 1")
        with pytest.raises(StoreUnavailableError, match="readonly") as raised:
            _claim(store, "during")
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert raised.value.__cause__.sqlite_errorname == "SQLITE_READONLY"
        assert store.get("before") is not None
        store._conn.execute("PRAGMA query_only = 0")
        _claim(store, "after")
        assert store.get("during") is None
        assert store.get("after") is not None


def test_a_full_store_holds_writes_and_takes_them_once_there_is_room(db_path: Path) -> None:
    """A full database (max_page_count reached) holds writes, then takes them once it grows."""
    with SqliteStore(db_path, timedelta(days=1)) as store:
        _claim(store, "first")
        (pages,) = store._conn.execute("PRAGMA page_count").fetchone()
        store._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreUnavailableError, match="full") as raised:
            for n in range(10_000):
                _claim(store, f"k{n:0>300}")
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert raised.value.__cause__.sqlite_errorname == "SQLITE_FULL"
        store._conn.execute("PRAGMA max_page_count = 1073741823")
        _claim(store, "after")
        assert store.get("after") is not None


def test_a_statement_error_propagates_instead_of_holding(db_path: Path) -> None:
    """A bug (here the table is gone: SQLITE_ERROR) raises the driver's error, it never holds."""
    with SqliteStore(db_path, timedelta(days=1)) as store:
        with closing(sqlite3.connect(db_path, isolation_level=None)) as other:
            other.execute("DROP TABLE idempotency")
        with pytest.raises(sqlite3.OperationalError, match="no such table") as raised:
            _claim(store, "k")
        assert not isinstance(raised.value, StoreUnavailableError)
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            store.get("k")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            store.tracked_runs()  # the tracker's read is classified too: a bug never holds
