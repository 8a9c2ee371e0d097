"""CheckSchedule: when each tracked run is looked at next, run by run (an Airflow without lists).

Each run is looked at first at once, then after ``interval`` seconds, the wait doubling per
look that found it unfinished, up to ``max_delay``. Thread-safe: the tracker's check threads
postpone and forget runs while its poll asks which are due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

BACKOFF_FACTOR = 2.0
MAX_BACKOFF_EXPONENT = 32  # keeps the float power finite however often a run was checked


def backoff_delay(checks: int, interval: float, max_delay: float) -> float:
    """Seconds until the next check of a run seen unfinished ``checks`` times in a row.

    Args:
        checks: how many checks found the run not final (1 after the first).
        interval: the delay after the first check.
        max_delay: the longest delay.

    Returns:
        ``interval``, doubled per further check, at most ``max_delay``.
    """
    exponent = min(max(checks - 1, 0), MAX_BACKOFF_EXPONENT)
    return float(min(interval * BACKOFF_FACTOR**exponent, max_delay))


@dataclass
class _Due:
    at: float  # time.monotonic() of the next check
    checks: int = 0


class CheckSchedule:
    """The next look of each tracked run."""

    def __init__(self, interval: float, max_delay: float) -> None:
        """Schedule looks ``interval`` seconds apart at first, at most ``max_delay``."""
        self._interval = interval
        self._max_delay = max_delay
        self._lock = threading.Lock()
        self._due: dict[str, _Due] = {}

    def keep_only(self, keys: Collection[str]) -> None:
        """Forget every run but ``keys`` (the ones still leased)."""
        with self._lock:
            self._due = {key: due for key, due in self._due.items() if key in keys}

    def is_due(self, key: str) -> bool:
        """Whether ``key``'s run should be looked at now (a run never looked at is)."""
        with self._lock:
            due = self._due.get(key)
        return due is None or due.at <= time.monotonic()

    def postpone(self, key: str) -> None:
        """The run was found unfinished: its next look waits longer."""
        with self._lock:
            due = self._due.setdefault(key, _Due(at=0.0))
            due.checks += 1
            due.at = time.monotonic() + backoff_delay(due.checks, self._interval, self._max_delay)

    def forget(self, key: str) -> None:
        """The run is done with (completed, abandoned or taken over)."""
        with self._lock:
            self._due.pop(key, None)
