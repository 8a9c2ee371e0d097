"""Tests of consumer/readiness.py: the verdicts /healthz and /readyz report, on a manual clock."""

from __future__ import annotations

import pytest

from consumer.kafka_io.offsets import Partition
from consumer.readiness import Readiness
from tests.ready_state import ManualClock, ready_state


@pytest.fixture
def clock() -> ManualClock:
    """A fresh manual clock."""
    return ManualClock()


@pytest.fixture
def readiness(clock: ManualClock) -> Readiness:
    """A ready Readiness on the manual clock."""
    return ready_state(clock)


def test_a_fresh_readiness_is_not_ready_and_says_why() -> None:
    """Before the loop starts, every unmet condition is named."""
    ready, reasons = Readiness(clock=ManualClock()).verdict()

    assert not ready
    assert reasons == [
        "not started",
        "kafka not connected: not connected yet",
        "airflow unavailable: not checked yet",
    ]


def test_all_conditions_met_is_ready(readiness: Readiness) -> None:
    """Started, Kafka connected, assigned, Airflow available and recent progress is ready."""
    assert readiness.verdict() == (True, [])
    assert readiness.alive() == (True, [])


def test_an_empty_assignment_is_ready(clock: ManualClock) -> None:
    """A group with no partition for this worker still counts as assigned."""
    readiness = ready_state(clock)

    readiness.set_assigned(set())

    assert readiness.verdict() == (True, [])
    assert readiness.assigned == frozenset()


def test_no_assignment_yet_is_not_ready(clock: ManualClock) -> None:
    """Connected to Kafka but not yet through the first rebalance is not ready."""
    readiness = Readiness(clock=clock)
    readiness.start()
    readiness.set_kafka(True)
    readiness.set_airflow(True)

    assert readiness.verdict() == (False, ["no partition assignment yet"])


def test_assign_and_revoke_track_the_owned_partitions(readiness: Readiness) -> None:
    """Rebalance callbacks add and remove partitions; revoking everything stays ready."""
    first, second = Partition("dag-trigger-requests", 0), Partition("dag-trigger-requests", 1)

    readiness.assign({second})
    assert readiness.assigned == {first, second}
    readiness.revoke({first, second})

    assert readiness.assigned == frozenset()
    assert readiness.verdict() == (True, [])


def test_stale_progress_is_not_ready_but_still_alive(
    readiness: Readiness, clock: ManualClock
) -> None:
    """After 31 s without a loop iteration /readyz fails; /healthz waits for 120 s."""
    clock.advance(31)

    assert readiness.verdict() == (False, ["no loop progress for 31s (limit 30s)"])
    assert readiness.alive() == (True, [])
    clock.advance(90)
    assert readiness.alive() == (False, ["no loop progress for 121s (limit 120s)"])
    readiness.loop_tick()
    assert readiness.verdict() == (True, [])


def test_verdict_judges_at_the_given_time(readiness: Readiness, clock: ManualClock) -> None:
    """``now`` overrides the clock, so callers can ask "ready at time t?"."""
    assert readiness.verdict(now=clock.now + 29) == (True, [])
    assert readiness.verdict(now=clock.now + 31)[0] is False


def test_fatal_fails_both_verdicts_and_keeps_the_first_message(readiness: Readiness) -> None:
    """A fatal error makes the worker neither ready nor alive; a later one does not replace it."""
    readiness.set_fatal("airflow rejected the credentials")
    readiness.set_fatal("something later")

    assert readiness.fatal == "airflow rejected the credentials"
    assert readiness.verdict() == (False, ["fatal: airflow rejected the credentials"])
    assert readiness.alive() == (False, ["fatal: airflow rejected the credentials"])


def test_airflow_and_kafka_outages_carry_their_reason(readiness: Readiness) -> None:
    """An unavailable dependency is named with the reason the worker gave."""
    readiness.set_airflow(False, "503 from /api/v2/monitor/health")
    readiness.set_kafka(False, "no broker reachable")

    assert readiness.verdict() == (
        False,
        [
            "kafka not connected: no broker reachable",
            "airflow unavailable: 503 from /api/v2/monitor/health",
        ],
    )
    readiness.set_airflow(True, "ignored when available")
    readiness.set_kafka(True)
    assert readiness.verdict() == (True, [])


def test_stopping_is_not_ready_but_alive(readiness: Readiness) -> None:
    """While draining after SIGTERM the worker is alive but no longer ready."""
    readiness.set_stopping()

    assert readiness.verdict() == (False, ["stopping"])
    assert readiness.alive() == (True, [])


def test_a_loop_that_never_starts_dies_after_the_alive_bound(clock: ManualClock) -> None:
    """Without any loop iteration, liveness is measured from creation."""
    readiness = Readiness(clock=clock)

    assert readiness.alive() == (True, [])
    clock.advance(121)
    assert readiness.alive()[0] is False
