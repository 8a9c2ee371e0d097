"""RetentionPurger: deletes idempotency keys (and refusals) older than ``DEDUP_RETENTION``.

``DEDUP_RETENTION`` bounds what the store remembers; the purger bounds what it keeps, so the
store's size stays about retention times the request rate. It runs in a thread of its own, every
``interval`` seconds, through the store's batched ``purge_expired`` (short transactions that
requests' writes interleave). Nothing ends that thread but ``stop``: a store outage is logged
as a warning, any other error with its traceback, and after each failure in a row the next
purge waits twice as long (at most ``max_delay``).
"""

from __future__ import annotations

import threading

import structlog

from consumer.errors import StoreUnavailableError
from consumer.metrics import Metrics
from consumer.store.protocol import DEFAULT_PURGE_BATCH, IdempotencyStore

log = structlog.get_logger(__name__)

DEFAULT_PURGE_INTERVAL = 300.0  # seconds between purges
DEFAULT_PURGE_MAX_DELAY = 3600.0  # the longest wait after purges failing in a row


class RetentionPurger:
    """Purges expired keys every ``interval`` seconds until ``stop`` is set."""

    def __init__(
        self,
        store: IdempotencyStore,
        stop: threading.Event,
        *,
        metrics: Metrics | None = None,
        interval: float = DEFAULT_PURGE_INTERVAL,
        max_delay: float = DEFAULT_PURGE_MAX_DELAY,
    ) -> None:
        """Prepare the purger; ``start`` runs it.

        Args:
            store: the idempotency store to purge.
            stop: set when the worker stops; the purger ends then.
            metrics: counts the purged keys, when given.
            interval: seconds between purges (the first runs at once).
            max_delay: the longest wait between purges that keep failing.
        """
        self._store = store
        self._stop = stop
        self._metrics = metrics
        self._interval = interval
        self._max_delay = max(max_delay, interval)
        self._thread = threading.Thread(target=self._run, name="retention-purger", daemon=True)

    def start(self) -> None:
        """Start purging in the background."""
        self._thread.start()

    def is_alive(self) -> bool:
        """Whether the purger's thread runs."""
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the thread to end (after ``stop``)."""
        self._thread.join(timeout)

    def purge_once(self) -> int:
        """Purge the expired keys and remembered refusals now.

        Returns:
            How many were deleted (``IdempotencyStore.purge_expired``'s rows).

        Raises:
            StoreUnavailableError: the store is unavailable (what was deleted before stays so).
        """
        purged = 0
        try:
            # bounded batches, each a short transaction: requests' writes interleave
            while not self._stop.is_set():
                deleted = self._store.purge_expired(DEFAULT_PURGE_BATCH)
                purged += deleted
                if deleted < DEFAULT_PURGE_BATCH:
                    break
        finally:
            if self._metrics is not None:
                self._metrics.count_purged(purged)
            if purged:
                log.info("store_purged", purged=purged)
        return purged

    def _purged(self) -> bool:
        """Purge once; False (logged) when it failed."""
        try:
            self.purge_once()
        except StoreUnavailableError as exc:
            log.warning("store_purge_failed", error=str(exc))
            return False
        except Exception:  # the thread's boundary: a bug is logged and purging goes on
            log.exception("store_purge_crashed")
            return False
        return True

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            failures = 0 if self._purged() else failures + 1
            delay = min(self._interval * 2 ** min(failures, 16), self._max_delay)
            if self._stop.wait(delay):
                return
