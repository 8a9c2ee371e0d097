"""A Readiness on a clock that moves only when told to: shared by test_readiness and test_health."""

from __future__ import annotations

from consumer.kafka_io.offsets import Partition
from consumer.readiness import Readiness


class ManualClock:
    """A monotonic clock that only moves when told to, so staleness needs no sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        """Start at ``start`` seconds."""
        self.now = start

    def __call__(self) -> float:
        """Return the current time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.now += seconds


def ready_state(clock: ManualClock) -> Readiness:
    """A Readiness whose every condition holds at ``clock``'s current time."""
    readiness = Readiness(clock=clock)
    readiness.start()
    readiness.set_kafka(True)
    readiness.set_assigned({Partition("dag-trigger-requests", 0)})
    readiness.set_airflow(True)
    readiness.loop_tick()
    return readiness
