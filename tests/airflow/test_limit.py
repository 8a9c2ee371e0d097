"""Tests of consumer/airflow/limit.py: the limit under synthetic latencies and errors."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest

from consumer.airflow.limit import (
    LATENCY_MIN_LIMIT,
    AdaptiveLimit,
    CallOutcome,
    ConcurrencyLimit,
    FixedLimit,
)
from tests.waiting import wait_until

FLOOR = 0.03  # seconds: Airflow 3 on PostgreSQL answers one lone POST in ~30 ms (notes §6)
ABSENCE_WAIT = 0.2  # seconds a thread is given to (wrongly) get past a full limit


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        """Start at an arbitrary instant."""
        self.now = 1000.0

    def __call__(self) -> float:
        """The current reading."""
        return self.now


def adaptive(max_limit: int = 8, initial_limit: int = 4) -> tuple[AdaptiveLimit, list[int]]:
    """An adaptive limit on a fake clock, and the list its ``on_change`` appends to."""
    changes: list[int] = []
    limit = AdaptiveLimit(
        max_limit, initial_limit=initial_limit, on_change=changes.append, clock=FakeClock()
    )
    return limit, changes


def batch(
    limit: AdaptiveLimit, latency: float | None = FLOOR, outcome: CallOutcome = CallOutcome.ANSWERED
) -> None:
    """Fill every free slot (one while probing), then finish all those calls alike."""
    free = 1 if limit.probing else limit.limit - limit.in_flight
    with ExitStack() as stack:
        for _ in range(free):
            stack.enter_context(limit.slot()).report(outcome, latency)


def probe(limit: AdaptiveLimit, latency: float = FLOOR) -> None:
    """Run the lone call that measures the floor."""
    assert limit.probing
    batch(limit, latency)
    assert not limit.probing


def test_starts_at_four_and_measures_the_floor_with_one_call_alone() -> None:
    """A new limit reports 4, but its first call runs alone and sets the floor."""
    limit, changes = adaptive(max_limit=16)
    assert (limit.limit, limit.probing, limit.floor) == (4, True, None)
    entered = threading.Event()

    def second() -> None:
        with limit.slot():
            entered.set()

    thread = threading.Thread(target=second)
    with limit.slot() as first:
        thread.start()
        assert not entered.wait(ABSENCE_WAIT)
        first.report(CallOutcome.ANSWERED, FLOOR)
    wait_until(entered.is_set, timeout=5, what="the second call to enter after the probe")
    thread.join(timeout=5)
    assert (limit.floor, limit.probing, changes) == (FLOOR, False, [])


def test_grows_by_one_per_round_under_steady_latency_up_to_the_maximum() -> None:
    """Latency at the floor grows the limit one step per round, 4 → 8, then holds at 8."""
    limit, changes = adaptive(max_limit=8)
    probe(limit)
    for _ in range(30):
        batch(limit, FLOOR * 1.5)
    assert changes == [5, 6, 7, 8]
    assert limit.limit == 8


def test_overload_halves_once_per_round_down_to_the_minimum() -> None:
    """A burst of 5xx/timeouts from one round halves once; further rounds halve again to 1."""
    limit, changes = adaptive(max_limit=8, initial_limit=8)
    probe(limit)
    batch(limit, latency=None, outcome=CallOutcome.OVERLOADED)
    assert limit.limit == 4  # eight failures, one cut
    batch(limit, latency=None, outcome=CallOutcome.OVERLOADED)
    batch(limit, latency=None, outcome=CallOutcome.OVERLOADED)
    batch(limit, latency=None, outcome=CallOutcome.OVERLOADED)
    assert changes == [4, 2, 1]
    assert limit.limit == 1


def test_latency_well_above_the_floor_cuts_the_limit_down_to_two() -> None:
    """Rounds at 5x the floor cut by a quarter each, 8 → 6 → 4 → 3 → 2, and stop at 2."""
    limit, changes = adaptive(max_limit=8, initial_limit=8)
    probe(limit)
    for _ in range(12):
        batch(limit, FLOOR * 5)
    assert changes == [6, 4, 3, 2]
    assert limit.limit == LATENCY_MIN_LIMIT == 2
    assert limit.floor == FLOOR
    batch(limit, latency=None, outcome=CallOutcome.OVERLOADED)  # an overload goes below
    assert limit.limit == 1


def test_latency_within_tolerance_still_grows() -> None:
    """Latency up to twice the floor is normal variation, not queueing."""
    limit, changes = adaptive(max_limit=6)
    probe(limit)
    for _ in range(20):
        batch(limit, FLOOR * 2)
    assert changes == [5, 6]


def test_one_slow_call_in_a_round_does_not_cut() -> None:
    """The round's median decides: a lone outlier among fast calls is ignored."""
    limit, changes = adaptive(max_limit=8, initial_limit=4)
    probe(limit)
    with ExitStack() as stack:
        calls = [stack.enter_context(limit.slot()) for _ in range(4)]
        for call in calls:
            call.report(CallOutcome.ANSWERED, FLOOR)
        calls[-1].report(CallOutcome.ANSWERED, FLOOR * 50)
    batch(limit)
    assert changes == [5]


def test_calls_admitted_before_a_cut_do_not_cut_again() -> None:
    """Failures of calls that started under the old limit were answered by the first cut."""
    limit, changes = adaptive(max_limit=8, initial_limit=8)
    probe(limit)
    with ExitStack() as stack:
        calls = [stack.enter_context(limit.slot()) for _ in range(8)]
        for call in calls:
            call.report(CallOutcome.OVERLOADED)
    after = limit.slot()
    after.__enter__().report(CallOutcome.OVERLOADED)
    after.__exit__(None, None, None)
    assert changes == [4, 2]


def test_a_quiet_spell_does_not_grow_the_limit() -> None:
    """Calls made one at a time prove nothing about 4 at once: the limit stays put."""
    limit, changes = adaptive(max_limit=8)
    probe(limit)
    for _ in range(50):
        with limit.slot() as call:
            call.report(CallOutcome.ANSWERED, FLOOR)
    assert changes == []
    assert limit.limit == 4


def test_answers_without_a_latency_neither_grow_nor_cut() -> None:
    """Duplicates and refused requests (several round trips) are no latency sample."""
    limit, changes = adaptive(max_limit=8)
    probe(limit)
    for _ in range(20):
        batch(limit, latency=None)
    assert changes == []


def test_an_unreported_call_only_frees_its_slot() -> None:
    """A slot left without a report (the worker stopped) changes nothing, even when probing."""
    limit, changes = adaptive(max_limit=8)
    with limit.slot():
        pass
    assert (limit.in_flight, limit.probing, changes) == (0, True, [])


def test_the_slot_is_freed_when_the_call_raises() -> None:
    """An exception inside the slot still releases it."""
    limit = FixedLimit(1)
    with pytest.raises(KeyError), limit.slot():
        raise KeyError("boom")
    assert limit.in_flight == 0


def test_the_floor_is_measured_again_after_its_ttl() -> None:
    """After floor_ttl without a matching sample, one call alone re-measures the floor."""
    clock = FakeClock()
    limit = AdaptiveLimit(8, floor_ttl=30.0, clock=clock)
    probe(limit, FLOOR)
    batch(limit, FLOOR * 1.5)
    clock.now += 29.0
    assert not limit.probing
    batch(limit, FLOOR * 1.5)
    clock.now += 2.0
    assert limit.probing
    probe(limit, FLOOR * 1.5)  # the floor may rise: Airflow got slower for everyone
    assert limit.floor == FLOOR * 1.5


def test_a_sample_at_the_floor_postpones_the_probe() -> None:
    """A sample as low as the floor confirms it, so a steady Airflow is not probed."""
    clock = FakeClock()
    limit = AdaptiveLimit(8, floor_ttl=30.0, clock=clock)
    probe(limit, FLOOR)
    clock.now += 20.0
    batch(limit, FLOOR)
    clock.now += 20.0
    assert not limit.probing


def test_a_failed_probe_ends_the_probe_and_halves() -> None:
    """An overload on the probe call cuts the limit and lets the others through."""
    limit, changes = adaptive(max_limit=8)
    batch(limit, latency=None, outcome=CallOutcome.OVERLOADED)
    assert (limit.probing, limit.limit, changes) == (False, 2, [2])


@pytest.mark.parametrize("seed", range(5))
def test_the_limit_stays_within_its_bounds(seed: int) -> None:
    """Any mix of latencies and errors keeps every limit within [min_limit, max_limit]."""
    rng = random.Random(seed)  # noqa: S311 -- a reproducible test sequence, not a secret
    clock = FakeClock()
    changes: list[int] = []
    limit = AdaptiveLimit(
        12, min_limit=2, initial_limit=4, floor_ttl=5.0, on_change=changes.append, clock=clock
    )
    for _ in range(500):
        clock.now += rng.uniform(0.0, 1.0)
        if rng.random() < 0.1:
            batch(limit, latency=None, outcome=CallOutcome.OVERLOADED)
        else:
            batch(limit, FLOOR * rng.uniform(0.8, 4.0))
        assert 2 <= limit.limit <= 12
    assert changes
    assert all(2 <= n <= 12 for n in changes)


def test_initial_limit_is_clamped_to_the_maximum() -> None:
    """A maximum below 4 starts at the maximum."""
    assert AdaptiveLimit(2).limit == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_limit": 0},
        {"max_limit": 4, "min_limit": 5},
        {"max_limit": 4, "tolerance": 1.0},
        {"max_limit": 4, "overload_backoff": 1.0},
        {"max_limit": 4, "latency_backoff": 0.0},
        {"max_limit": 4, "floor_ttl": 0.0},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    """Bounds and factors outside their ranges are a ValueError at construction."""
    with pytest.raises(ValueError):
        AdaptiveLimit(**kwargs)


def test_fixed_limit_ignores_reports() -> None:
    """The fixed limit stays at its value whatever the calls report."""
    limit = FixedLimit(3)
    for outcome in (CallOutcome.OVERLOADED, CallOutcome.ANSWERED):
        with ExitStack() as stack:
            for _ in range(3):
                stack.enter_context(limit.slot()).report(outcome, 100.0)
    assert limit.limit == 3
    with pytest.raises(ValueError):
        FixedLimit(0)


def slots_open(limit: ConcurrencyLimit) -> int:
    """How many calls the limit admits right now (one while an adaptive limit probes)."""
    return 1 if isinstance(limit, AdaptiveLimit) and limit.probing else limit.limit


def hammer(limit: ConcurrencyLimit, threads: int, calls: int) -> tuple[int, list[str]]:
    """Race ``threads`` threads through ``calls`` slots each; the peak and any violations.

    Each call stays inside until the limit is full (or some thread has finished), so the
    threads really overlap and the peak shows the limit was reached and not passed.
    """
    state = threading.Condition()
    inside = 0
    finished = 0
    peak = 0
    violations: list[str] = []

    def full() -> bool:
        return finished > 0 or inside >= slots_open(limit)

    def work() -> None:
        nonlocal inside, finished, peak
        for _ in range(calls):
            with limit.slot() as call, state:
                inside += 1
                peak = max(peak, inside)
                if inside > limit.limit:
                    violations.append(f"{inside} calls inside a limit of {limit.limit}")
                state.notify_all()
                if not state.wait_for(full, timeout=10):
                    violations.append(f"the limit never filled: {inside} of {limit.limit}")
                inside -= 1
                call.report(CallOutcome.ANSWERED, FLOOR)
        with state:
            finished += 1
            state.notify_all()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    return peak, violations


@pytest.mark.parametrize(
    ("make", "most"), [(lambda: FixedLimit(3), 3), (lambda: AdaptiveLimit(6), 6)]
)
def test_concurrency_never_exceeds_the_limit(
    make: Callable[[], ConcurrencyLimit], most: int
) -> None:
    """Sixteen threads racing for slots fill the limit but never hold more than it."""
    limit = make()
    peak, violations = hammer(limit, threads=16, calls=100)
    assert violations == []
    assert peak == most == limit.limit


def test_a_full_limit_blocks_until_a_slot_frees() -> None:
    """With every slot taken, the next caller waits, and enters once one is released."""
    limit = FixedLimit(2)
    entered = threading.Event()
    with ExitStack() as stack:
        stack.enter_context(limit.slot())
        held = limit.slot()
        held.__enter__()

        def third() -> None:
            with limit.slot():
                entered.set()

        thread = threading.Thread(target=third)
        thread.start()
        assert not entered.wait(ABSENCE_WAIT)
        held.__exit__(None, None, None)
        wait_until(entered.is_set, timeout=5, what="the waiting caller to enter")
    thread.join(timeout=5)
