"""The backlog value (consumer/flow/backlog.py): ages, limits in words, totals, fullness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer.flow.backlog import Backlog, describe_limit, flow_limits, format_age, limit_of
from consumer.flow.config import FlowLimits
from consumer.settings import load_settings
from consumer.store.deferred import DeferredCount

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45, "45s"), (184, "3m04s"), (7500, "2h05m"), (273_600, "3d04h"), (-5, "0s")],
)
def test_an_age_shows_its_two_largest_units(seconds: int, shown: str) -> None:
    """Seconds, minutes, hours or days with the next unit zero-padded; never negative."""
    assert format_age(timedelta(seconds=seconds)) == shown


def test_the_limit_of_a_dag_is_its_first_matching_entry_plus_the_all_dag_bound() -> None:
    """The first matching entry gives max_queued_runs and rate; AIRFLOW_MAX_QUEUED_RUNS joins."""
    limits = FlowLimits.build(
        [{"dags": ["etl_*"], "rate": "10/s"}, {"dags": ["etl_x"], "max_queued_runs": 3}], 50
    )
    assert limit_of(limits, "etl_x") == {
        "max_queued_runs": None,
        "rate": "10/s",
        "airflow_max_queued_runs": 50,
    }
    assert describe_limit(limits, "etl_x") == "rate 10/s, AIRFLOW_MAX_QUEUED_RUNS 50"
    assert describe_limit(limits, "other") == "AIRFLOW_MAX_QUEUED_RUNS 50"
    assert describe_limit(FlowLimits(), "other") == "none"


def test_the_limits_come_from_the_settings_as_the_worker_builds_them() -> None:
    """dag_limits and AIRFLOW_MAX_QUEUED_RUNS of the settings (MAX_DEFERRED is no limit)."""
    settings = load_settings(
        dag_limits=[{"dags": ["a"], "max_queued_runs": 2}],
        airflow_max_queued_runs=9,
    )
    limits = flow_limits(settings)
    assert limits.airflow_max_queued_runs == 9
    assert limits.dag_limits[0].max_queued_runs == 2
    assert describe_limit(limits, "a") == "max_queued_runs 2, AIRFLOW_MAX_QUEUED_RUNS 9"


def test_a_backlog_totals_ages_and_ranks_its_dags() -> None:
    """Ages on the given clock (a future created_at counts 0), totals per DAG, most first."""
    backlog = Backlog.read(
        [
            DeferredCount("a", "limit", 2, NOW - timedelta(minutes=5)),
            DeferredCount("a", "not_before", 3, NOW - timedelta(hours=1)),
            DeferredCount("b", "limit", 5, NOW + timedelta(seconds=2)),
            DeferredCount("c", "limit", 1, NOW),
        ],
        NOW,
        max_deferred=14,
    )
    assert backlog.total == 11
    assert backlog.oldest_age == timedelta(hours=1)
    assert [line.oldest_age for line in backlog.lines][2] == timedelta(0)
    assert backlog.by_dag() == [("a", 5), ("b", 5), ("c", 1)]
    assert (backlog.near_full(), backlog.full()) == (False, False)


def test_fullness_is_measured_against_max_deferred() -> None:
    """80% of MAX_DEFERRED is near full; MAX_DEFERRED itself is full; empty has no age."""
    eight = [DeferredCount("a", "limit", 8, NOW)]
    near = Backlog.read(eight, NOW, max_deferred=10)
    assert (near.near_full(), near.full()) == (True, False)
    assert Backlog.read(eight, NOW, max_deferred=8).full()
    assert Backlog.read([], NOW, max_deferred=8).oldest_age is None
