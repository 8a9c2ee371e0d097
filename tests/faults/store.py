"""Store fault injectors: the real store, except for one scripted failure (named as such).

A store outage at one exact moment (between a reply's acknowledgement and the store write
that follows it) is not something a real database can be made to show on cue.
"""

from __future__ import annotations

from typing import Any

from consumer.errors import StoreUnavailableError
from consumer.store import IdempotencyStore


class MarkCompletedFailsOnce:
    """Forwards to a real store; its first ``mark_completed`` meets a store outage."""

    def __init__(self, store: IdempotencyStore) -> None:
        """Wrap ``store``."""
        self._store = store
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        """Every other call reaches the real store."""
        return getattr(self._store, name)

    def mark_completed(self, key: str, run_state: str, *, owner: str | None = None) -> bool:
        """Fail once as a failover would, then mark for real."""
        if not self.failed:
            self.failed = True
            raise StoreUnavailableError("idempotency store failed: server closed the connection")
        return self._store.mark_completed(key, run_state, owner=owner)
