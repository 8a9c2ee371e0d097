"""Fixtures shared by the store tests: a database path, a manual clock, and both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.store import IdempotencyStore
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite import SqliteStore
from tests.store.stores import RETENTION, ManualClock


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database file path in a fresh temporary directory."""
    return tmp_path / "store.db"


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock at ``START``."""
    return ManualClock()


@pytest.fixture
def sqlite_store(db_path: Path, clock: ManualClock) -> Iterator[SqliteStore]:
    """An open SqliteStore on a temporary file, closed after the test."""
    with SqliteStore(db_path, RETENTION, clock=clock) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[IdempotencyStore]:
    """Each store in turn, empty, on the manual clock: the contract suite runs on both."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_store")
        return
    url = request.getfixturevalue("new_database")
    with PostgresStore(url, RETENTION, clock=clock) as opened:
        yield opened
