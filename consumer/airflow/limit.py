"""The Airflow call limiter: a fixed cap, or one that adapts to how Airflow copes.

It sits in front of every trigger call (``Pipeline`` holds one; ``assembly`` picks
``AdaptiveLimit`` or ``FixedLimit`` from ``airflow_concurrency``).

Both limits hand out slots the same way::

    with limit.slot() as call:          # blocks while ``limit.limit`` calls are in flight
        result = airflow.trigger(...)
        call.report(CallOutcome.ANSWERED, latency=call.elapsed())

A slot left without a report (the worker stopped, an unexpected error) tells the limit
nothing; it is only released.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import StrEnum
from typing import Protocol, TypeAlias

Clock: TypeAlias = Callable[[], float]
LimitCallback: TypeAlias = Callable[[int], None]

# notes §6: Airflow 3 peaks at ~60 runs/s with 4 concurrent POSTs; a backlog starts there
DEFAULT_INITIAL_LIMIT = 4
DEFAULT_MIN_LIMIT = 1
DEFAULT_TOLERANCE = 2.0
DEFAULT_OVERLOAD_BACKOFF = 0.5
DEFAULT_LATENCY_BACKOFF = 0.75
DEFAULT_FLOOR_TTL = 30.0
# latency alone never cuts below this: Airflow on PostgreSQL serves at least as much with 2
# calls as with 1 in every ceiling sweep, and a cut to 1 on a passing slowdown halved the
# capacity right when a backlog was building (at half the ceiling it made the steady
# load's p99: 230-365 ms, against 84-99 ms with this bound). Overload (the 500s of Airflow
# on SQLite, say) still cuts to ``min_limit``.
LATENCY_MIN_LIMIT = 2


class CallOutcome(StrEnum):
    """How Airflow coped with one call, as far as the limit is concerned."""

    ANSWERED = "answered"
    """Airflow answered as designed: a run created or found, or the request refused (4xx)."""
    OVERLOADED = "overloaded"
    """Airflow showed distress: 5xx, 429, a timeout, no connection (retried or not)."""


class Call:
    """One admitted call; the caller reports how it went before leaving the slot.

    Attributes:
        started: the limit's clock when the call was admitted.
        in_flight: calls in flight once this one was admitted, itself included.
        outcome: the reported outcome; None until ``report`` is called.
        latency: the reported latency in seconds; None when it is no clean sample.
    """

    def __init__(self, clock: Clock, in_flight: int, epoch: int, probe: bool) -> None:
        """Admit a call (done by the limits; callers get one from ``slot``).

        Args:
            clock: the limit's monotonic clock.
            in_flight: calls in flight once this one was admitted, itself included.
            epoch: the limit's epoch at admission (see ``AdaptiveLimit``).
            probe: whether this call measures the latency floor alone.
        """
        self._clock = clock
        self.started = clock()
        self.in_flight = in_flight
        self.epoch = epoch
        self.probe = probe
        self.outcome: CallOutcome | None = None
        self.latency: float | None = None

    def elapsed(self) -> float:
        """Seconds since the call was admitted, on the limit's clock."""
        return self._clock() - self.started

    def report(self, outcome: CallOutcome, latency: float | None = None) -> None:
        """Say how the call went; the limit reads it when the slot is left.

        Args:
            outcome: ``ANSWERED`` or ``OVERLOADED``.
            latency: seconds one clean round trip took (usually ``elapsed()``); None when
                the call made several round trips and so is no latency sample.
        """
        self.outcome = outcome
        self.latency = latency


class ConcurrencyLimit(Protocol):
    """A cap on concurrent calls that hands out slots (``FixedLimit``, ``AdaptiveLimit``)."""

    @property
    def limit(self) -> int:
        """How many calls may be in flight now."""
        ...

    def slot(self) -> AbstractContextManager[Call]:
        """Wait for a free slot; the ``Call`` it yields takes the caller's report."""
        ...


class _Slots:
    """Slot bookkeeping shared by both limits: a condition, a count and a cap."""

    def __init__(self, limit: int, clock: Clock) -> None:
        if limit < 1:
            raise ValueError(f"a concurrency limit must be at least 1, not {limit}")
        self._cond = threading.Condition()
        self._limit = limit
        self._in_flight = 0
        self._clock = clock

    @property
    def limit(self) -> int:
        """How many calls may be in flight now."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """How many calls hold a slot now."""
        return self._in_flight

    @contextmanager
    def slot(self) -> Iterator[Call]:
        """Wait for a free slot and hold it for the ``with`` block.

        Yields:
            The admitted call; report its outcome on it before the block ends.
        """
        with self._cond:
            while self._in_flight >= self._admission_limit():
                self._cond.wait()
            self._in_flight += 1
            call = self._admit()
        try:
            yield call
        finally:
            with self._cond:
                self._in_flight -= 1
                self._learn(call)
                # wake only as many waiters as there are free slots: a worker may have
                # hundreds of threads waiting here, and waking them all at every release
                # cost it several milliseconds of CPU per Airflow call
                self._cond.notify(max(1, self._admission_limit() - self._in_flight))

    def _admission_limit(self) -> int:
        return self._limit

    def _admit(self) -> Call:
        return Call(self._clock, self._in_flight, epoch=0, probe=False)

    def _learn(self, call: Call) -> None:
        """Adjust to a finished call (called with the condition held)."""


class FixedLimit(_Slots):
    """A constant cap (``airflow_concurrency = "fixed"``); reports are ignored."""

    def __init__(self, limit: int, *, clock: Clock = time.monotonic) -> None:
        """Create the cap.

        Args:
            limit: how many calls may be in flight, at least 1.
            clock: the monotonic clock ``Call.elapsed`` reads.

        Raises:
            ValueError: ``limit`` is below 1.
        """
        super().__init__(limit, clock)


class AdaptiveLimit(_Slots):
    """A cap that follows Airflow: AIMD driven by errors and by latency above its floor.

    The algorithm is TCP congestion avoidance (Jacobson 1988; AIMD after Chiu & Jain
    1989) with TCP Vegas's delay signal (Brakmo & Peterson 1995): the combination behind
    the ``AIMDLimit`` and ``VegasLimit`` of Netflix's concurrency-limits library
    (https://github.com/Netflix/concurrency-limits; "Performance Under Load", Netflix
    Technology Blog, 2018). The floor is re-measured the way BBR's ProbeRTT does it
    (Cardwell et al., 2016).

    - **Floor.** The lowest clean latency seen recently: what one call costs Airflow with
      nothing queued in front of it. When no sample has matched it for ``floor_ttl``
      seconds, the next call runs alone (the others wait) and its latency becomes the
      floor. Otherwise a floor measured under load ratchets upwards and takes the limit
      with it, the known weakness of Vegas that BBR's probe fixes.
    - **Rounds.** Latency is judged once per round, like TCP's window: a round is
      ``limit`` clean samples from calls admitted since the last change while at least
      half the slots were taken (a quiet spell proves nothing, so it never grows the limit).
      The round's (low) median decides, so one slow call does not cut.
    - **Steady latency** (median within ``tolerance * floor``): +1.
    - **Latency** above ``tolerance * floor``: ``* latency_backoff`` (0.75), but not
      below ``LATENCY_MIN_LIMIT`` (2). Past its capacity Airflow only queues and latency
      grows with concurrency (notes §6: p50 29-36 ms alone, 158-251 ms at 8 calls on
      Airflow 3 with PostgreSQL; 5 s stalls from 2 calls on SQLite), so the limit settles
      near ``tolerance`` times the concurrency Airflow really serves in parallel: 3-4 where
      its throughput peaks.
    - **Overload** (5xx, 429, timeout, unreachable): ``* overload_backoff`` (halve) at
      once, without waiting for the round. Calls admitted before the last cut ran under
      the old limit and are ignored, so a burst of failures from one event halves once,
      not once per failing call.

    Why not Gradient2: it compares a short-term with a long-term latency average, and
    under a sustained queue the long-term average drifts up with it; the floor and probe
    keep the reference at Airflow's unloaded cost. A ratio to the floor also works at the
    small limits Airflow needs (1 on SQLite, 2-6 on PostgreSQL), where Vegas's queue
    thresholds (3 and 6 queued requests below a limit of 100) can never fire.

    A backlog burst never becomes a storm of POSTs: the limit starts at ``initial_limit``
    (4), the first call measures the floor alone, and growth is one step per round.

    ``on_change`` gets each new limit (not the probe's temporary 1), with the lock held:
    it must be quick and must not use this limit.
    """

    def __init__(
        self,
        max_limit: int,
        *,
        min_limit: int = DEFAULT_MIN_LIMIT,
        initial_limit: int = DEFAULT_INITIAL_LIMIT,
        tolerance: float = DEFAULT_TOLERANCE,
        overload_backoff: float = DEFAULT_OVERLOAD_BACKOFF,
        latency_backoff: float = DEFAULT_LATENCY_BACKOFF,
        floor_ttl: float = DEFAULT_FLOOR_TTL,
        on_change: LimitCallback | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """Create the limit.

        Args:
            max_limit: the highest the limit may go (``airflow_max_concurrency``).
            min_limit: the lowest it may go, at least 1.
            initial_limit: where it starts; clamped to ``[min_limit, max_limit]``.
            tolerance: a round whose median latency exceeds ``tolerance * floor`` is
                queueing; above 1.
            overload_backoff: factor applied on an overload signal, in (0, 1).
            latency_backoff: factor applied after a queueing round, in (0, 1).
            floor_ttl: seconds after which an unconfirmed floor is measured again.
            on_change: called with each new limit.
            clock: a monotonic clock in seconds.

        Raises:
            ValueError: a bound or factor is out of range.
        """
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit <= max_limit, not {min_limit}, {max_limit}")
        if tolerance <= 1 or floor_ttl <= 0:
            raise ValueError("tolerance must be above 1 and floor_ttl above 0")
        if not (0 < overload_backoff < 1 and 0 < latency_backoff < 1):
            raise ValueError("backoff factors must lie strictly between 0 and 1")
        super().__init__(min(max(initial_limit, min_limit), max_limit), clock)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self._tolerance = tolerance
        self._overload_backoff = overload_backoff
        self._latency_backoff = latency_backoff
        self._floor_ttl = floor_ttl
        self._on_change = on_change
        self._epoch = 0  # bumped by every change of the limit: a new round
        self._cut_epoch = 0  # the epoch the last cut started
        self._round: list[float] = []
        self._floor: float | None = None
        self._floor_at = clock()
        self._probing = True  # the first call measures the floor alone

    @property
    def floor(self) -> float | None:
        """The latency floor in seconds; None until a first clean sample."""
        return self._floor

    @property
    def probing(self) -> bool:
        """True while (or once the next call is) one call alone measuring the floor."""
        return self._probing or self._floor_expired()

    def _floor_expired(self) -> bool:
        return self._clock() - self._floor_at > self._floor_ttl

    def _admission_limit(self) -> int:
        if self._floor_expired():
            self._probing = True
        return 1 if self._probing else self._limit

    def _admit(self) -> Call:
        probe = self._probing and self._in_flight == 1
        return Call(self._clock, self._in_flight, epoch=self._epoch, probe=probe)

    def _learn(self, call: Call) -> None:
        if call.outcome is None:
            return
        if call.probe:
            self._probing = False
            self._floor_at = self._clock()
            if call.latency is not None:
                self._floor = call.latency
        if call.outcome is CallOutcome.OVERLOADED:
            if call.epoch >= self._cut_epoch:
                self._change(math.floor(self._limit * self._overload_backoff), cut=True)
            return
        latency = call.latency
        if latency is None:
            return
        if self._floor is None or latency <= self._floor:
            self._floor, self._floor_at = latency, self._clock()
        if call.epoch == self._epoch and 2 * call.in_flight >= self._limit:
            self._round.append(latency)
            if len(self._round) >= self._limit:
                self._end_round(self._floor)

    def _end_round(self, floor: float) -> None:
        if statistics.median_low(self._round) > self._tolerance * floor:
            lowered = math.floor(self._limit * self._latency_backoff)
            self._change(max(lowered, LATENCY_MIN_LIMIT), cut=True)
        else:
            self._change(self._limit + 1, cut=False)

    def _change(self, limit: int, *, cut: bool) -> None:
        self._epoch += 1
        self._round.clear()
        if cut:
            self._cut_epoch = self._epoch
        limit = min(max(limit, self.min_limit), self.max_limit)
        if limit != self._limit:
            self._limit = limit
            if self._on_change is not None:
                self._on_change(limit)
