"""Readiness: what /healthz and /readyz report, updated by the worker loop (spec §6, STYLE §14).

``Readiness`` is explicit, thread-safe state: the worker loop reports each iteration
(``loop_tick``), the partition assignment, whether Kafka, Airflow and the store are usable,
and a fatal error. It judges two verdicts that ``health.HealthServer`` serves:

- ``alive``: the process loop is alive (recent progress, no fatal error): ``/healthz``.
- ``verdict``: started, no fatal error, Kafka connected, partitions assigned (possibly
  none), Airflow available, recent progress: ``/readyz``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeAlias

from consumer.kafka_io.offsets import Partition

Clock: TypeAlias = Callable[[], float]

# /readyz: a loop that has not completed an iteration for this long is not ready.
DEFAULT_READY_STALENESS = 30.0
# /healthz: a loop stuck this long is dead and should be restarted.
DEFAULT_ALIVE_STALENESS = 120.0


class Readiness:
    """What ``/healthz`` and ``/readyz`` report; the worker loop updates it every iteration.

    Every method is thread-safe: the loop thread, the rebalance callbacks and the HTTP
    server's threads use one instance concurrently. Times are read from ``clock``
    (``time.monotonic`` by default), so tests can move time instead of sleeping.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        ready_staleness: float = DEFAULT_READY_STALENESS,
        alive_staleness: float = DEFAULT_ALIVE_STALENESS,
    ) -> None:
        """Create the state of a worker that has not started yet.

        Args:
            clock: returns monotonic seconds; ``loop_tick`` and ``verdict`` read it.
            ready_staleness: seconds without a loop iteration after which /readyz fails.
            alive_staleness: seconds without a loop iteration after which /healthz fails.
        """
        self._clock = clock
        self.ready_staleness = ready_staleness
        self.alive_staleness = alive_staleness
        self._lock = threading.Lock()
        self._created = clock()
        self._started = False
        self._stopping = False
        self._last_progress: float | None = None
        self._assigned: set[Partition] = set()
        self._assignment_known = False
        self._kafka_connected = False
        self._kafka_reason: str | None = "not connected yet"
        self._airflow_available = False
        self._airflow_reason: str | None = "not checked yet"
        self._store_reason: str | None = None  # why requests are held on the store, if they are
        self._deferral_full: str | None = None  # MAX_DEFERRED reached: how many wait
        self._fatal: str | None = None
        self._stalled: dict[Partition, str] = {}

    # -- updates from the worker ------------------------------------------------------------
    def start(self) -> None:
        """Mark the loop as started; progress is counted from now."""
        with self._lock:
            self._started = True
            self._last_progress = self._clock()

    def loop_tick(self) -> None:
        """Record one completed loop iteration (the loop is making progress)."""
        with self._lock:
            self._last_progress = self._clock()

    def set_assigned(self, partitions: Iterable[Partition]) -> None:
        """Replace the partitions assigned to this worker; an empty set is a valid answer.

        Args:
            partitions: every partition this worker now owns.
        """
        with self._lock:
            self._assigned = set(partitions)
            self._assignment_known = True

    def assign(self, partitions: Iterable[Partition]) -> None:
        """Add newly assigned partitions (the rebalance listener's ``on_assigned``).

        Args:
            partitions: the partitions just assigned (possibly none).
        """
        with self._lock:
            self._assigned |= set(partitions)
            self._assignment_known = True

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Remove revoked partitions (the rebalance listener's ``on_revoked``).

        Args:
            partitions: the partitions just revoked.
        """
        with self._lock:
            self._assigned -= set(partitions)

    def set_kafka(self, connected: bool, reason: str | None = None) -> None:
        """Record whether the Kafka cluster is reachable.

        Args:
            connected: True after a successful poll or metadata fetch.
            reason: why it is not connected (shown by /readyz); ignored when connected.
        """
        with self._lock:
            self._kafka_connected = connected
            self._kafka_reason = None if connected else reason

    def set_airflow(self, available: bool, reason: str | None = None) -> None:
        """Record whether the Airflow API is reachable and accepts our credentials.

        Args:
            available: True while requests can be triggered.
            reason: why it is unavailable (shown by /readyz); ignored when available.
        """
        with self._lock:
            self._airflow_available = available
            self._airflow_reason = None if available else reason

    def set_stalled(self, stalled: dict[Partition, str]) -> None:
        """Replace the partitions stopped at a record batch that cannot be read.

        Args:
            stalled: partition to why it stopped (served by /readyz).
        """
        with self._lock:
            self._stalled = dict(stalled)

    def set_store(self, available: bool, reason: str | None = None) -> None:
        """Record whether the idempotency store answers (requests are held while it fails).

        Args:
            available: whether the last store call succeeded.
            reason: why it failed (shown by /readyz); ignored when available.
        """
        with self._lock:
            self._store_reason = None if available else reason or "failing"

    def set_deferral_full(self, full: bool, waiting: int = 0) -> None:
        """Record whether ``MAX_DEFERRED`` requests wait (fetching stops until fewer do).

        Args:
            full: whether the bound is reached.
            waiting: how many wait (shown by /readyz).
        """
        with self._lock:
            self._deferral_full = f"{waiting} requests deferred (MAX_DEFERRED)" if full else None

    def set_fatal(self, message: str) -> None:
        """Record an error that stops the worker (both /healthz and /readyz then fail).

        Args:
            message: what went wrong, without secrets (it is served over HTTP).
        """
        with self._lock:
            if self._fatal is None:
                self._fatal = message

    def set_stopping(self) -> None:
        """Mark the worker as draining after SIGTERM: no longer ready, still alive."""
        with self._lock:
            self._stopping = True

    # -- reads ------------------------------------------------------------------------------
    @property
    def assigned(self) -> frozenset[Partition]:
        """The partitions this worker currently owns."""
        with self._lock:
            return frozenset(self._assigned)

    @property
    def fatal(self) -> str | None:
        """The fatal error message, or None."""
        with self._lock:
            return self._fatal

    @property
    def last_progress(self) -> float | None:
        """Clock time of the last loop iteration (or of ``start``); None before either."""
        with self._lock:
            return self._last_progress

    def verdict(self, now: float | None = None) -> tuple[bool, list[str]]:
        """Decide whether the worker is ready, and why not.

        Args:
            now: the clock time to judge at; the clock's current time by default.

        Returns:
            ``(ready, reasons)``: ready iff started, not stopping, no fatal error, Kafka
            connected, an assignment received (possibly empty), Airflow available and a
            loop iteration within ``ready_staleness`` seconds; ``reasons`` names each
            failed condition in a short string and is empty when ready.
        """
        now = self._clock() if now is None else now
        with self._lock:
            reasons = []
            if self._fatal is not None:
                reasons.append(f"fatal: {self._fatal}")
            if not self._started:
                reasons.append("not started")
            if self._stopping:
                reasons.append("stopping")
            if not self._kafka_connected:
                reasons.append(_with_reason("kafka not connected", self._kafka_reason))
            elif not self._assignment_known:
                reasons.append("no partition assignment yet")
            if not self._airflow_available:
                reasons.append(_with_reason("airflow unavailable", self._airflow_reason))
            for partition, why in sorted(self._stalled.items()):
                reasons.append(f"partition {partition.topic}-{partition.partition} stalled: {why}")
            held = (
                ("store unavailable", self._store_reason),
                ("deferral full", self._deferral_full),
            )
            reasons += [f"{what}: {why}" for what, why in held if why is not None]
            if self._started:
                reasons.extend(self._staleness(now, self.ready_staleness))
        return not reasons, reasons

    def alive(self, now: float | None = None) -> tuple[bool, list[str]]:
        """Decide whether the process loop is alive (for /healthz and the container).

        Args:
            now: the clock time to judge at; the clock's current time by default.

        Returns:
            ``(alive, reasons)``: alive iff no fatal error and a loop iteration (or, before
            the first one, creation) within ``alive_staleness`` seconds.
        """
        now = self._clock() if now is None else now
        with self._lock:
            reasons = [] if self._fatal is None else [f"fatal: {self._fatal}"]
            reasons.extend(self._staleness(now, self.alive_staleness))
        return not reasons, reasons

    def _staleness(self, now: float, limit: float) -> list[str]:
        """A reason when the last progress (or creation) is older than ``limit``; caller locks."""
        since = self._created if self._last_progress is None else self._last_progress
        idle = now - since
        if idle > limit:
            return [f"no loop progress for {idle:.0f}s (limit {limit:g}s)"]
        return []


def _with_reason(what: str, reason: str | None) -> str:
    return f"{what}: {reason}" if reason else what
