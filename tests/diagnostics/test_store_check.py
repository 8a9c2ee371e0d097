"""The store check on a temporary SQLite file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from consumer.diagnostics.store_check import check_store
from consumer.settings import load_settings
from consumer.store.sqlite_schema import SCHEMA_VERSION


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
