"""Pure tests of the run value objects: Airflow 3 and 2 timestamps read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.airflow.runs import parse_timestamp


def test_both_versions_timestamp_forms_read_as_the_same_utc_instant() -> None:
    """Airflow 3's ``Z``, Airflow 2's ``+00:00`` and an offset all give an aware UTC datetime."""
    expected = datetime(2025, 2, 1, 6, 30, tzinfo=UTC)
    assert parse_timestamp("2025-02-01T06:30:00Z") == expected
    assert parse_timestamp("2025-02-01T06:30:00+00:00") == expected
    assert parse_timestamp("2025-02-01T12:00:00+05:30") == expected
    assert parse_timestamp("2025-02-01T12:00:00+05:30").tzinfo is UTC  # type: ignore[union-attr]


def test_null_and_garbage_timestamps_read_as_none() -> None:
    """A null logical date (Airflow 3) or an unreadable value gives None."""
    assert parse_timestamp(None) is None
    assert parse_timestamp("") is None
    assert parse_timestamp("yesterday") is None
