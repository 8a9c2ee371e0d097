"""What shows that a run was cleared (pure): Airflow 3's ``queued_at``, Airflow 2's start."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumer.airflow.clearing import RunClock, cleared_since

T1 = datetime(2026, 12, 7, 10, tzinfo=UTC)
T2 = datetime(2026, 12, 7, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("before", "now", "cleared"),
    [
        # Airflow 3: every clear sets queued_at
        (RunClock("failed", T1, T1), RunClock("queued", T2, None), True),
        (RunClock("failed", T1, T1), RunClock("failed", T1, T1), False),
        (RunClock("running", T1, T1), RunClock("success", T1, T1), False),  # it just ended
        (RunClock("running", T1, T1), RunClock("running", T2, T1), True),
        # Airflow 2: a finished run's start_date is reset by a clear
        (RunClock("failed", None, T1), RunClock("queued", None, None), True),
        (RunClock("failed", None, T1), RunClock("running", None, T2), True),
        (RunClock("success", None, T1), RunClock("success", None, T1), False),
        # ... a run that had not finished shows nothing (a second clear is harmless)
        (RunClock("running", None, T1), RunClock("success", None, T1), False),
        (RunClock("queued", None, None), RunClock("running", None, T2), False),
    ],
)
def test_cleared_since(before: RunClock, now: RunClock, cleared: bool) -> None:
    """Only a moved clear mark counts as a clear; a run ending on its own does not."""
    assert cleared_since(before, now) is cleared


def test_clock_text_round_trips() -> None:
    """The text kept in the store reads back as the same clock."""
    for clock in (RunClock("failed", T1, T2), RunClock("queued", None, None)):
        assert RunClock.from_text(clock.text()) == clock


def test_clock_from_airflow_json() -> None:
    """Both versions' timestamps (``Z`` and ``+00:00``) and a missing ``queued_at``."""
    v3 = {"state": "failed", "queued_at": "2026-12-07T10:00:00Z", "start_date": None}
    v2 = {"state": "success", "start_date": "2026-12-07T11:00:00+00:00"}
    assert RunClock.from_body(v3) == RunClock("failed", T1, None)
    assert RunClock.from_body(v2) == RunClock("success", None, T2)
