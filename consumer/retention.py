"""RetentionPurger: deletes idempotency keys older than ``DEDUP_RETENTION``, now and then.

``DEDUP_RETENTION`` bounds what the store remembers; the purger bounds what it keeps, so the
store's size stays about retention times the request rate. It runs in a thread of its own, every
``interval`` seconds, through the store's batched ``purge_expired`` (short transactions that
requests' writes interleave); a failing store is simply tried again at the next interval.
"""

from __future__ import annotations

import threading

import structlog

from consumer.errors import StoreUnavailableError
from consumer.metrics import Metrics
from consumer.store import DEFAULT_PURGE_BATCH, IdempotencyStore

log = structlog.get_logger(__name__)

DEFAULT_PURGE_INTERVAL = 300.0  # seconds between purges


class RetentionPurger:
    """Purges expired keys every ``interval`` seconds until ``stop`` is set."""

    def __init__(
        self,
        store: IdempotencyStore,
        stop: threading.Event,
        *,
        metrics: Metrics | None = None,
        interval: float = DEFAULT_PURGE_INTERVAL,
    ) -> None:
        """Prepare the purger; ``start`` runs it.

        Args:
            store: the idempotency store to purge.
            stop: set when the worker stops; the purger ends then.
            metrics: counts the purged keys, when given.
            interval: seconds between purges (the first runs at once).
        """
        self._store = store
        self._stop = stop
        self._metrics = metrics
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="retention-purger", daemon=True)

    def start(self) -> None:
        """Start purging in the background."""
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the thread to end (after ``stop``)."""
        self._thread.join(timeout)

    def purge_once(self) -> int:
        """Purge the expired keys now.

        Returns:
            How many were deleted (the store failing ends the round; it is tried again later).
        """
        purged = 0
        try:
            # bounded batches, each a short transaction: requests' writes interleave
            while not self._stop.is_set():
                deleted = self._store.purge_expired(DEFAULT_PURGE_BATCH)
                purged += deleted
                if deleted < DEFAULT_PURGE_BATCH:
                    break
        except StoreUnavailableError as exc:
            log.warning("store_purge_failed", error=str(exc))
        if self._metrics is not None:
            self._metrics.count_purged(purged)
        if purged:
            log.info("store_purged", purged=purged)
        return purged

    def _run(self) -> None:
        while not self._stop.is_set():
            self.purge_once()
            if self._stop.wait(self._interval):
                return
