"""Pure tests of RetryPolicy / RetryState: backoff sequence, jitter bounds, Retry-After, budget."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from consumer.airflow.retry import RetryPolicy, parse_retry_after
from consumer.errors import ConfigError


def test_delays_grow_exponentially_up_to_the_cap_without_jitter() -> None:
    """With jitter off, delays are base * factor**n, capped at max_delay."""
    policy = RetryPolicy(base=0.5, factor=2.0, max_delay=3.0, jitter=False, max_attempts=10)
    state = policy.start(now=0.0)
    delays = []
    for _ in range(5):
        state = state.next("503", now=0.0)
        delays.append(state.delay)
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_within_zero_and_the_ceiling() -> None:
    """With jitter on, each delay is uniform in [0, ceiling]."""
    policy = RetryPolicy(base=1.0, factor=2.0, max_delay=8.0, jitter=True, max_attempts=50)
    rng = random.Random(7)  # noqa: S311 -- a seeded source for a reproducible test
    state = policy.start(now=0.0)
    for failures in range(1, 30):
        state = state.next("ReadTimeout", now=0.0, rng=rng)
        assert 0.0 <= state.delay <= policy.backoff_ceiling(failures)
    assert len({round(a.delay, 6) for a in state.history}) > 20


def test_retry_after_is_honoured_instead_of_backoff_and_capped() -> None:
    """A Retry-After replaces the backoff delay, up to retry_after_cap."""
    policy = RetryPolicy(base=0.1, jitter=False, retry_after_cap=10.0)
    state = policy.start(now=0.0).next("429", retry_after=2.0, now=0.0)
    assert state.delay == 2.0
    assert state.next("429", retry_after=3600.0, now=0.0).delay == 10.0


def test_budget_is_spent_after_max_attempts_failures() -> None:
    """The state is exhausted once max_attempts transient failures are recorded."""
    state = RetryPolicy(max_attempts=3, jitter=False, max_elapsed=None).start(now=0.0)
    state = state.next("503", now=0.0).next("503", now=0.0)
    assert not state.exhausted
    assert state.next("503", now=0.0).exhausted


def test_budget_is_spent_when_the_next_wait_would_pass_max_elapsed() -> None:
    """The time budget counts the delay still to come."""
    policy = RetryPolicy(base=4.0, jitter=False, max_attempts=100, max_elapsed=10.0)
    state = policy.start(now=0.0).next("503", now=5.0)
    assert not state.exhausted
    assert state.next("503", now=5.0).exhausted


def test_state_is_immutable_and_keeps_the_history() -> None:
    """Next and record return new states; the old one is unchanged; attempts count all calls."""
    first = RetryPolicy(jitter=False).start(now=0.0)
    second = first.next("503", now=0.0)
    third = second.record("200")
    assert first.attempts == 0
    assert [a.outcome for a in third.history] == ["503", "200"]
    assert (third.attempts, third.failures) == (2, 1)
    assert third.delay == 0.0


def test_retry_after_parses_seconds_and_http_dates() -> None:
    """Retry-After accepts delay-seconds and an HTTP-date; garbage and absence give None."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("options", [{"base": -1.0}, {"factor": 0.5}, {"max_attempts": 0}], ids=str)
def test_nonsense_policies_are_configuration_errors(options: dict[str, float]) -> None:
    """A policy that could never retry sensibly raises ConfigError."""
    with pytest.raises(ConfigError):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_retry_last_turns_the_last_answer_into_a_failure_without_a_new_attempt() -> None:
    """retry_last marks the last call retried and picks a delay; the attempt count stays."""
    state = RetryPolicy(base=0.5, jitter=False).start(now=0.0).record("409").record("404")
    retried = state.retry_last(now=0.0)
    assert (retried.attempts, retried.failures, retried.delay) == (2, 1, 0.5)
    assert retried.history[-1].outcome == "404"


def test_only_a_posts_lost_answer_may_have_reached_airflow() -> None:
    """A GET's timeout or 504 never counts as a POST that may have made the run."""
    state = RetryPolicy().start(now=0.0)
    state = state.record("409", "POST").next("ReadTimeout", now=1.0).next("504", now=2.0)
    assert not state.may_have_reached
    assert state.next("ReadTimeout", now=3.0, method="POST").may_have_reached
    assert state.next("503", now=3.0, method="POST").may_have_reached is False
