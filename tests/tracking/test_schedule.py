"""Tests of consumer/tracking/schedule.py: when each tracked run is looked at next (pure)."""

from __future__ import annotations

from consumer.tracking.schedule import CheckSchedule, backoff_delay


def test_backoff_doubles_from_the_interval_up_to_the_cap() -> None:
    """The n-th unfinished check waits interval * 2^(n-1) seconds, never more than the cap."""
    assert [backoff_delay(n, 5.0, 60.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert backoff_delay(0, 5.0, 60.0) == 5.0


def test_backoff_stays_finite_after_any_number_of_checks() -> None:
    """A run checked for days does not overflow the delay computation."""
    assert backoff_delay(100_000, 5.0, 60.0) == 60.0


def test_a_postponed_run_is_not_due_and_a_forgotten_one_is() -> None:
    """Postponing pushes a run's next look out; forgetting or dropping it makes it due again."""
    schedule = CheckSchedule(interval=60.0, max_delay=600.0)
    assert schedule.is_due("a")
    schedule.postpone("a")
    schedule.postpone("b")
    assert not schedule.is_due("a")
    schedule.forget("a")
    schedule.keep_only({"a"})
    assert schedule.is_due("a")
    assert schedule.is_due("b")
