"""Tests of consumer/store/opening.py: open_store's URLs and settings checks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from consumer.errors import ConfigError
from consumer.store import EntryStatus, open_store
from consumer.store.sqlite import SqliteStore

RETENTION = timedelta(days=7)


def test_open_store_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///relative/path.db creates the file under the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()

    store = open_store("sqlite:///data/keys.db", RETENTION)
    store.mark_pending("k1", fingerprint="fp", dag_id="etl", dag_run_id="r")
    store.close()

    assert (tmp_path / "data" / "keys.db").is_file()


def test_open_store_absolute_url(tmp_path: Path) -> None:
    """sqlite:////abs/path.db opens the absolute path."""
    path = tmp_path.resolve() / "abs.db"
    assert str(path).startswith("/")

    store = open_store(f"sqlite:///{path}", RETENTION)
    store.mark_pending("k1", fingerprint="fp", dag_id="etl", dag_run_id="r")
    store.close()

    with SqliteStore(path, RETENTION) as reopened:
        assert reopened.get("k1") is not None


def test_open_store_in_memory_works_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///:memory: is a working store that writes no file."""
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///:memory:", RETENTION)
    store.mark_pending("k1", fingerprint="fp", dag_id="etl", dag_run_id="r")
    entry = store.get("k1")
    store.close()

    assert entry is not None
    assert entry.status is EntryStatus.PENDING
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    ["postgresql://db/keys", "sqlite://relative.db", "sqlite:///", "keys.db", ""],
)
def test_open_store_rejects_unsupported_urls(url: str) -> None:
    """URLs that are not a sqlite:/// path are a configuration error naming the setting."""
    with pytest.raises(ConfigError, match="TRIGGER_CONSUMER_STORE_URL"):
        open_store(url, RETENTION)


def test_open_store_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    """A database path in a directory that does not exist is a configuration error."""
    with pytest.raises(ConfigError, match="cannot open"):
        open_store(f"sqlite:///{tmp_path.resolve()}/missing/keys.db", RETENTION)


def test_non_positive_retention_is_a_config_error() -> None:
    """A zero retention window is refused."""
    with pytest.raises(ConfigError, match="retention"):
        open_store("sqlite:///:memory:", timedelta(0))
