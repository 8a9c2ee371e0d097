"""ScriptedClearing: a fault injector for re-runs, behind the pipeline's ``Clearing`` seam.

Airflow cannot easily be made to refuse one clear, lose one clear's answer, or show a run
whose clock moved between two reads; this stands in for ``airflow.clearing.RunClearing``
in the Rerunner's unit tests only (the scenario tests clear real runs). Each run has a
clock; ``ensure_cleared`` applies the same rule as the real one (clear unless the clock
moved) and counts the clears it made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from consumer.airflow.clearing import Clocked, RunClock, cleared_since
from consumer.errors import AirflowError

START = datetime(2026, 12, 7, 9, tzinfo=UTC)


class ScriptedClearing:
    """One run's clock, and scripted refusals of its next clears."""

    def __init__(self, clock: RunClock | None = None) -> None:
        """A failed run on Airflow 3 (a ``queued_at``) unless ``clock`` says otherwise."""
        self.run = clock or RunClock("failed", START, START)
        self.clears = 0  # the clears made
        self.refusals: list[AirflowError] = []  # raised by the next clears, in order
        self.nothing_to_clear = False  # only_failed with no failed task: the clock stays

    def clock(self, dag_id: str, run_id: str) -> Clocked:
        """The run's clock now."""
        return Clocked(self.run, 1)

    def ensure_cleared(
        self,
        dag_id: str,
        run_id: str,
        before: RunClock,
        *,
        only_failed: bool,
        owned: Callable[[], bool],
    ) -> Clocked:
        """Clear unless the clock moved since ``before`` (or raise the next refusal)."""
        if cleared_since(before, self.run):
            return Clocked(self.run, 1, cleared=True)
        if self.refusals:
            raise self.refusals.pop(0)
        self.clears += 1
        if not self.nothing_to_clear:
            self.run = self.cleared(self.run)
        return Clocked(self.run, 3, cleared=cleared_since(before, self.run))

    @staticmethod
    def cleared(clock: RunClock) -> RunClock:
        """What a clear does to the clock on Airflow 3: queued again, ``queued_at`` moved."""
        queued_at = (clock.queued_at or START) + timedelta(minutes=1)
        return replace(clock, state="queued", queued_at=queued_at, start_date=None)
