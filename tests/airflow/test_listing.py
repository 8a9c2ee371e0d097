"""Listed runs from either API version's JSON (pure); the listings: tests/cli/test_audit.py."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.airflow.listing import ListedRun, run_from_listing


def test_airflow_3_runs_were_made_when_triggered() -> None:
    """Airflow 3's ``run_after`` is the trigger's time, whatever the logical date or a clear."""
    item = {
        "dag_id": "d",
        "dag_run_id": "kafka__k",
        "state": "queued",
        "queued_at": "2026-12-07T13:00:00Z",  # cleared an hour later
        "logical_date": "2020-01-01T00:00:00Z",
        "run_after": "2026-12-07T12:00:00Z",
    }
    assert run_from_listing(item) == ListedRun(
        "d", "kafka__k", "queued", datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    )


def test_airflow_2_runs_take_the_earlier_of_their_dates() -> None:
    """Airflow 2 has no creation time: the earlier of execution and start date bounds it."""
    item = {
        "dag_id": "d",
        "dag_run_id": "kafka__k",
        "state": "success",
        "execution_date": "2026-12-07T12:00:00+00:00",
        "logical_date": "2026-12-07T12:00:00+00:00",
        "start_date": "2026-12-07T12:00:02+00:00",
    }
    assert run_from_listing(item).created == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_queued_airflow_2_run_without_dates_has_no_creation_time() -> None:
    """Missing dates give None, never an exception."""
    item = {"dag_id": "d", "dag_run_id": "r", "execution_date": None, "start_date": None}
    assert run_from_listing(item) == ListedRun("d", "r", "unknown", None)
