"""The store check on a temporary SQLite file and on the devstack PostgreSQL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from structlog.testing import capture_logs

from consumer.diagnostics.store_check import check_store
from consumer.settings import load_settings
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite_schema import SCHEMA_VERSION
from tests.store.faults import read_only

SECRET = "s3cret-Pw"


def test_a_writable_store_passes_and_keeps_no_probe_key(tmp_path: Path) -> None:
    """A sqlite store in a writable directory passes; the probe key is released again."""
    path = tmp_path / "store.db"
    result = check_store(load_settings(store_url=f"sqlite:///{path}"))
    assert result.ok, result
    assert result.detail == f"sqlite:///{path} is writable, schema version {SCHEMA_VERSION}"
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT COUNT(*) FROM idempotency").fetchone() == (0,)


def test_a_store_in_a_missing_directory_fails(tmp_path: Path) -> None:
    """A store that cannot be opened fails, naming TRIGGER_CONSUMER_STORE_URL."""
    result = check_store(load_settings(store_url=f"sqlite:///{tmp_path / 'no' / 'store.db'}"))
    assert not result.ok
    assert result.remedy is not None
    assert "TRIGGER_CONSUMER_STORE_URL" in result.remedy


def test_a_read_only_postgres_store_fails_the_check_naming_the_cause(new_database: str) -> None:
    """A database that turned read-only fails the check (no crash), saying it is read-only."""
    PostgresStore(new_database, timedelta(days=1)).close()  # its schema is current
    with read_only(new_database):
        result = check_store(load_settings(store_url=new_database))
    assert not result.ok
    assert "read-only transaction" in result.detail, result


def test_a_query_string_password_never_shows_in_the_store_check(new_database: str) -> None:
    """``?password=`` in STORE_URL shows as ``***`` whether the check passes or fails."""
    good = f"{new_database}?password={SECRET}"
    bad = good.replace("/t_", "/missing_t_")
    with capture_logs() as logs:
        results = [check_store(load_settings(store_url=url)) for url in (good, bad)]
    assert [result.ok for result in results] == [True, False], results
    assert "password=***" in results[0].detail
    assert "password=***" in results[1].detail
    for result in results:
        assert SECRET not in f"{result!r} {result.detail} {result.remedy}"
    assert SECRET not in str(logs)
