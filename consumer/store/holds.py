"""StoreHold: store calls that wait out a store outage instead of failing the request (spec §3).

Every store call of the pipeline's ``execute`` goes through ``StoreHold.call``::

    call(fn) ─► fn() ─► result                     (a success: available again, fetching resumes)
                └─ StoreUnavailableError ─► held: reason set, backoff, fn() again
                                            └─ the worker stops ─► StoppingError (no reply)

Nothing is answered, dead-lettered or committed because the store is locked, full or
read-only; the worker loop reads ``available`` and ``reason`` to stop fetching and report
unready while any call is held.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from consumer.errors import StoppingError, StoreUnavailableError

log = structlog.get_logger(__name__)

HOLD_INITIAL_DELAY = 0.5
HOLD_MAX_DELAY = 10.0

T = TypeVar("T")
ObserveCall = Callable[[str, float], None]
"""Told (operation, seconds) of each store call that succeeded (``Metrics.observe_store_call``)."""


def _ignore(_operation: str, _seconds: float) -> None:
    pass


class StoreHold:
    """Retries store calls with backoff while the store fails; thread-safe."""

    def __init__(
        self,
        stop: threading.Event | None = None,
        *,
        initial_delay: float = HOLD_INITIAL_DELAY,
        max_delay: float = HOLD_MAX_DELAY,
        observe: ObserveCall = _ignore,
    ) -> None:
        """Create the hold.

        Args:
            stop: set when the worker stops; a held call gives up then (``StoppingError``).
            initial_delay: seconds before the first retry.
            max_delay: the longest wait between retries.
            observe: told how long each store call that succeeded took.
        """
        self._stop = stop or threading.Event()
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._observe = observe
        self._failing = 0  # calls currently held
        self._lock = threading.Lock()
        self.reason: str | None = None

    @property
    def available(self) -> bool:
        """False while any store call is held."""
        with self._lock:
            return self._failing == 0

    def timed(self, fn: Callable[[], T], operation: str) -> T:
        """Run ``fn`` once, timing it if it succeeds (a call that must not wait: triage's read).

        Args:
            fn: one store call.
            operation: what it does, for the store-latency metric.

        Returns:
            What ``fn`` returned; its exceptions propagate.
        """
        began = time.monotonic()
        result = fn()
        self._observe(operation, time.monotonic() - began)
        return result

    def call(self, fn: Callable[[], T], operation: str = "call") -> T:
        """Run ``fn`` until it does not raise ``StoreUnavailableError``.

        Args:
            fn: one store call.
            operation: what it does, for the store-latency metric.

        Returns:
            What ``fn`` returned.

        Raises:
            StoppingError: the worker stopped while the store failed.
        """
        delay = self._initial_delay
        held = False
        try:
            while True:
                try:
                    return self.timed(fn, operation)
                except StoreUnavailableError as exc:
                    if not held:
                        held = True
                        with self._lock:
                            self._failing += 1
                    self.reason = str(exc)
                    log.warning("store_unavailable_holding_requests", reason=str(exc), delay=delay)
                    if self._stop.wait(delay):
                        raise StoppingError("stopping while the store is unavailable") from None
                    delay = min(delay * 2, self._max_delay)
        finally:
            if held:
                with self._lock:
                    self._failing -= 1
                    if self._failing == 0:
                        self.reason = None
                        log.info("store_available_again")
