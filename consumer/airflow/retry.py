"""Retry policy and per-call retry state: exponential backoff, full jitter, Retry-After, budget.

``RetryPolicy`` is the configuration; ``RetryState`` is an immutable value that records every
HTTP call of one client call (STYLE §7, after urllib3's ``Retry``): ``next`` records a
transient failure and the delay before the next try, ``record`` a call that needs no backoff.
The retry loop itself lives in ``transport.py``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from consumer.errors import ConfigError

DEFAULT_BASE = 0.5
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_DELAY = 30.0
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_AFTER_CAP = 120.0
# outcomes after which a POST may have reached Airflow although no answer came back
MAY_HAVE_REACHED = frozenset({"ReadTimeout", "ConnectionAborted", "502", "504"})


@dataclass(frozen=True)
class RetryPolicy:
    """How one client call retries transient failures.

    Attributes:
        base: the first backoff ceiling in seconds.
        factor: growth of the ceiling per failed attempt.
        max_delay: the largest backoff ceiling in seconds.
        jitter: full jitter (a uniform delay in ``[0, ceiling]``); off gives the ceiling itself.
        max_attempts: failed attempts after which the call gives up (the budget).
        max_elapsed: seconds after which the call gives up, counting the next delay;
            ``None`` bounds only the attempts. The worker's budget is the setting
            ``airflow_retry_budget`` (``AirflowConnection.from_settings``).
        retry_after_cap: the longest ``Retry-After`` honoured, in seconds.
    """

    base: float = DEFAULT_BASE
    factor: float = DEFAULT_FACTOR
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: bool = True
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_elapsed: float | None = None
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP

    def __post_init__(self) -> None:
        """Reject values that would never retry sensibly.

        Raises:
            ConfigError: on a negative delay, a factor below 1 or a budget below 1 attempt.
        """
        if min(self.base, self.max_delay, self.retry_after_cap) < 0 or self.factor < 1:
            raise ConfigError("Airflow retry delays must be >= 0 and the factor >= 1")
        if self.max_attempts < 1:
            raise ConfigError("Airflow retry max_attempts must be >= 1")

    def backoff_ceiling(self, failures: int) -> float:
        """The backoff ceiling after ``failures`` failed attempts (1 → ``base``).

        Args:
            failures: failed attempts so far, at least 1.

        Returns:
            ``min(max_delay, base * factor ** (failures - 1))``.
        """
        exponent = max(failures - 1, 0)
        # cap the exponent: factor ** 1000 overflows a float long after max_delay is reached
        return min(self.max_delay, self.base * self.factor ** min(exponent, 64))

    def start(self, now: float | None = None) -> RetryState:
        """A fresh state for one client call.

        Args:
            now: the monotonic clock reading; ``time.monotonic()`` when omitted.

        Returns:
            A state with an empty history.
        """
        return RetryState(policy=self, started=time.monotonic() if now is None else now)


@dataclass(frozen=True)
class Attempt:
    """One HTTP call of a client call and what followed it.

    Attributes:
        outcome: the status code (``"503"``) or the exception name (``"ReadTimeout"``).
        retried: whether it was a transient failure followed by another try.
        delay: seconds waited before the next try (0 when not retried).
        method: the HTTP method of the call.
    """

    outcome: str
    retried: bool = False
    delay: float = 0.0
    method: str = "GET"


@dataclass(frozen=True)
class RetryState:
    """Immutable history of one client call's HTTP attempts; each step returns a new state."""

    policy: RetryPolicy
    started: float
    history: tuple[Attempt, ...] = field(default_factory=tuple)
    last_at: float | None = None

    @property
    def attempts(self) -> int:
        """HTTP calls made so far, successful or not."""
        return len(self.history)

    @property
    def failures(self) -> int:
        """Transient failures recorded so far."""
        return sum(1 for attempt in self.history if attempt.retried)

    @property
    def may_have_reached(self) -> bool:
        """Whether a POST of this call may have reached Airflow although no answer came back.

        Only a POST can have made a run: a GET that timed out (the look-up after a 409)
        changed nothing.
        """
        return any(a.method == "POST" and a.outcome in MAY_HAVE_REACHED for a in self.history)

    @property
    def delay(self) -> float:
        """Seconds to wait before the next try (0 when the last call was not a failure)."""
        return self.history[-1].delay if self.history else 0.0

    @property
    def exhausted(self) -> bool:
        """Whether the budget is spent: no further try may be made."""
        if self.failures >= self.policy.max_attempts:
            return True
        if self.policy.max_elapsed is None or self.last_at is None:
            return False
        return self.last_at - self.started + self.delay > self.policy.max_elapsed

    def record(self, outcome: str, method: str = "GET") -> RetryState:
        """Record a call that needs no backoff (a success, a 409, a 401 before a token refresh).

        Args:
            outcome: the status code or exception name.
            method: the HTTP method of the call.

        Returns:
            The new state.
        """
        return replace(self, history=(*self.history, Attempt(outcome, method=method)))

    def next(
        self,
        outcome: str,
        *,
        retry_after: float | None = None,
        now: float | None = None,
        rng: random.Random | None = None,
        method: str = "GET",
    ) -> RetryState:
        """Record a transient failure and choose the delay before the next try.

        Args:
            outcome: the status code or exception name.
            method: the HTTP method of the call.
            retry_after: the server's ``Retry-After`` in seconds; honoured up to the cap
                instead of the backoff.
            now: the monotonic clock reading; ``time.monotonic()`` when omitted.
            rng: the random source for jitter; the module's when omitted.

        Returns:
            The new state; check ``exhausted`` before waiting ``delay``.
        """
        delay = self._delay(retry_after, rng)
        return replace(
            self,
            history=(*self.history, Attempt(outcome, retried=True, delay=delay, method=method)),
            last_at=time.monotonic() if now is None else now,
        )

    def retry_last(
        self, *, now: float | None = None, rng: random.Random | None = None
    ) -> RetryState:
        """Turn the last recorded call into a transient failure, when only a later look showed it.

        A 409 is recorded as an answer; when reading the run then shows no run (another run
        held the logical date Airflow picked), the POST must be retried after a backoff.

        Args:
            now: the monotonic clock reading; ``time.monotonic()`` when omitted.
            rng: the random source for jitter; the module's when omitted.

        Returns:
            The new state, with the same number of attempts.
        """
        last = self.history[-1]
        retried = replace(last, retried=True, delay=self._delay(None, rng))
        return replace(
            self,
            history=(*self.history[:-1], retried),
            last_at=time.monotonic() if now is None else now,
        )

    def _delay(self, retry_after: float | None, rng: random.Random | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.policy.retry_after_cap)
        ceiling = self.policy.backoff_ceiling(self.failures + 1)
        return (rng or random).uniform(0.0, ceiling) if self.policy.jitter else ceiling


SINGLE_ATTEMPT = RetryPolicy(max_attempts=1, max_elapsed=None)
"""One try and no retry: for probes (``ping``) and doctor's checks."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110: delay-seconds or HTTP-date).

    Args:
        value: the header value, or None when absent.
        now: the current time for the HTTP-date form; ``datetime.now(UTC)`` when omitted.

    Returns:
        A delay of at least 0 seconds, or None when absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
