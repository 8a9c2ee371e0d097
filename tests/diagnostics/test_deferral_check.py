"""Doctor's deferral check: the verdict on a backlog, and the check on a SQLite store file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.diagnostics.deferral_check import check_deferred, judge
from consumer.flow.backlog import Backlog
from consumer.settings import load_settings
from consumer.store.deferred import DeferredCount
from consumer.store.sqlite import SqliteStore
from tests.flow.backlogs import fill_backlog
from tests.store.stores import RETENTION, ManualClock

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _backlog(counts: dict[str, int], max_deferred: int = 100) -> Backlog:
    """A backlog of ``counts`` per DAG, each DAG's oldest request 90 seconds old."""
    old = NOW - timedelta(seconds=90)
    lines = [DeferredCount(dag, "limit", count, old) for dag, count in counts.items()]
    return Backlog.read(lines, NOW, max_deferred)


def test_nothing_waiting_passes_naming_the_bound() -> None:
    """An empty store passes: none waiting, MAX_DEFERRED named."""
    result = judge(_backlog({}))
    assert (result.ok, result.warning) == (True, False)
    assert result.detail == "none waiting (MAX_DEFERRED 100)"


def test_the_total_the_oldest_age_and_the_top_five_dags_are_shown() -> None:
    """Six DAGs: the five with most waiting, most first, then how many DAGs more."""
    counts = {"a": 1, "b": 9, "c": 3, "d": 3, "e": 5, "f": 2}
    result = judge(_backlog(counts))
    assert (result.ok, result.warning) == (True, False)
    assert result.detail == (
        "23 waiting of MAX_DEFERRED 100, oldest 1m30s: b 9, e 5, c 3, d 3, f 2, … (+1 DAGs)"
    )


def test_eighty_percent_of_max_deferred_warns_that_back_pressure_is_near() -> None:
    """79 of 100 passes quietly; 80 of 100 warns, naming --release and MAX_DEFERRED."""
    assert not judge(_backlog({"etl": 79})).warning
    result = judge(_backlog({"etl": 80}))
    assert (result.ok, result.warning) == (True, True)
    assert result.remedy is not None
    assert "MAX_DEFERRED 100 near (≥ 80%)" in result.remedy
    assert "trigger-consumer deferred --release DAG" in result.remedy
    assert "TRIGGER_CONSUMER_MAX_DEFERRED" in result.remedy


def test_a_full_backlog_says_fetching_stopped() -> None:
    """At MAX_DEFERRED the warning says the worker has stopped fetching."""
    result = judge(_backlog({"etl": 60, "reports": 40}))
    assert (result.ok, result.warning) == (True, True)
    assert result.remedy is not None
    assert result.remedy.startswith("MAX_DEFERRED 100 reached: the worker has stopped fetching")


def test_the_check_reads_a_sqlite_store(tmp_path: Path) -> None:
    """Rows deferred an hour ago on a SQLite file: their total, DAGs and age on its clock."""
    path = tmp_path / "store.db"
    an_hour_ago = ManualClock(datetime.now(UTC) - timedelta(hours=1))
    with SqliteStore(path, RETENTION, clock=an_hour_ago) as store:
        fill_backlog(store)

    result = check_deferred(load_settings(store_url=f"sqlite:///{path}", max_deferred=6))

    assert (result.name, result.ok, result.warning) == ("deferred", True, True)
    assert result.detail == "5 waiting of MAX_DEFERRED 6, oldest 1h00m: etl_orders 3, reports 2"
