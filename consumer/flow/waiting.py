"""What waits deferred in the store, as last read: metrics, ``/readyz`` and back-pressure."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from consumer.store.deferred import DeferredCount


@dataclass
class Waiting:
    """What waits in the store, as last read: for metrics, ``/readyz`` and back-pressure."""

    max_deferred: int
    counts: list[DeferredCount] = field(default_factory=list)
    added: int = 0  # requests this replica deferred since the last read
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        """Requests waiting (as last read, plus those deferred here since)."""
        with self._lock:
            return sum(count.count for count in self.counts) + self.added

    def full(self) -> bool:
        """Whether ``MAX_DEFERRED`` is reached: the worker stops fetching until it is not."""
        return self.total >= self.max_deferred

    def read(self, counts: list[DeferredCount]) -> None:
        """Take a fresh read of the store's counts."""
        with self._lock:
            self.counts, self.added = counts, 0

    def deferred_here(self) -> None:
        """One more request was deferred by this replica."""
        with self._lock:
            self.added += 1
