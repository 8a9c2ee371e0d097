"""The tracking leases a replica holds while it polls: renewed as it works, a fence on publish.

A poll leases its tracked runs for ``ttl`` (``IdempotencyStore.lease_tracked``) and may then
work for minutes: an Airflow listing through read timeouts and retries, publishes waiting
for the broker's ack. Another replica takes a run whose lease ran out, so ``LeaseKeeper``:

- renews the leases it still holds once a third of ``ttl`` has passed since the last
  renewal, at each step of a poll (after the listing, before each run's check); a run
  another replica took over in the meantime is dropped, and left to it;
- fences each ``completed`` publish: right before it, one statement confirms that this
  replica still holds the run's lease and extends it to ``fence_ttl``, which outlasts
  the publish, so that no other replica takes the run while its reply is on the way;
- marks a run completed or abandoned only as its lease holder.

Lease times are the store's (on PostgreSQL the server's clock, whatever the replicas'
clocks say); the keeper's monotonic clock only decides when to renew.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import structlog

from consumer.kafka_io.sink import DEFAULT_ACK_TIMEOUT, MAX_BLOCK_MS
from consumer.store import IdempotencyStore, StoredEntry

log = structlog.get_logger(__name__)

# The longest a publish of the worker's sink takes before it returns or raises: up to
# MAX_BLOCK_MS for the topic's metadata, then DEFAULT_ACK_TIMEOUT for the broker's ack.
PUBLISH_BOUND = timedelta(seconds=MAX_BLOCK_MS / 1000 + DEFAULT_ACK_TIMEOUT)
# What the fenced lease must also cover: the fence's own round trip and the mark after the ack
FENCE_MARGIN = timedelta(seconds=15)
RENEW_AFTER = 1 / 3  # renew once this share of a lease has passed: two renewals may fail


class Completion(enum.Enum):
    """How ``LeaseKeeper.complete`` ended."""

    MARKED = "marked"  # published and marked completed
    LOST = "lost"  # the lease was lost before the publish: the new holder replies
    TAKEN_OVER = "taken_over"  # published, but another owner took the lease meanwhile


class LeaseKeeper:
    """The leases on tracked runs one owner holds, kept while its polls work.

    Safe to use from the tracker's check threads at once.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        owner: str,
        ttl: timedelta,
        *,
        publish_bound: timedelta = PUBLISH_BOUND,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Hold no lease yet.

        Args:
            store: the store that keeps the leases.
            owner: this process's lease owner id.
            ttl: how long a lease lasts unless renewed.
            publish_bound: the longest one publish takes (the sink's ack timeout); a
                fenced lease lasts this plus ``FENCE_MARGIN``, or ``ttl`` if longer.
            monotonic: the clock that decides when to renew.
        """
        self._store = store
        self._owner = owner
        self._ttl = ttl
        self._fence_ttl = max(ttl, publish_bound + FENCE_MARGIN)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._renewing = threading.Lock()
        self._held: set[str] = set()
        # replies acknowledged whose mark failed: run state by key, marked without a resend
        self._published: dict[str, str] = {}
        self._renewed = 0.0  # monotonic time the held leases were last taken or renewed

    @property
    def fence_ttl(self) -> timedelta:
        """How long a lease lasts from the fence before a publish."""
        return self._fence_ttl

    def take(self, limit: int) -> list[StoredEntry]:
        """Lease (or renew) up to ``limit`` tracked runs; they are the ones held from now on.

        Args:
            limit: at most this many entries.

        Returns:
            The leased entries, oldest first.
        """
        started = self._monotonic()
        leased = self._store.lease_tracked(self._owner, self._ttl, limit)
        with self._lock:
            self._held = {entry.key for entry in leased}
            self._renewed = started
            self._published = {k: v for k, v in self._published.items() if k in self._held}
        return leased

    def holds(self, key: str) -> bool:
        """Whether this owner still held ``key``'s lease at the last renewal or fence."""
        with self._lock:
            return key in self._held

    def renew_if_due(self) -> None:
        """Renew the held leases once ``RENEW_AFTER`` of ``ttl`` has passed; drop the lost ones.

        Raises:
            StoreUnavailableError: the store did not answer; the leases are kept as they were.
        """
        due = self._ttl.total_seconds() * RENEW_AFTER
        with self._renewing:
            started = self._monotonic()
            with self._lock:
                if started - self._renewed < due or not self._held:
                    return
                keys = set(self._held)
            renewed = self._store.renew_leases(self._owner, self._ttl, keys)
            with self._lock:
                self._held &= renewed | (self._held - keys)
                self._renewed = started

    def fence(self, key: str) -> bool:
        """Confirm, right before a publish, that ``key`` is still held, for ``fence_ttl``.

        Returns:
            True when the lease is held and extended: no other owner can take it before
            ``fence_ttl`` from now has passed; False when it was lost (and is dropped).
        """
        held = key in self._store.renew_leases(self._owner, self._fence_ttl, [key])
        if not held:
            self._drop(key)
        return held

    def published(self) -> dict[str, str]:
        """Every key whose reply was acknowledged here but not yet marked, with its state."""
        with self._lock:
            return dict(self._published)

    def published_state(self, key: str) -> str | None:
        """The run state of ``key``'s reply already acknowledged here but not yet marked."""
        return self._published.get(key)

    def complete(self, key: str, run_state: str, publish: Callable[[], None]) -> Completion:
        """Fence, publish ``key``'s ``completed`` reply and mark its run completed.

        A reply acknowledged whose mark then failed (a store outage) is remembered: the
        next call only marks it, so this replica never sends it twice.

        Raises:
            whatever ``publish`` or the store raises; the caller tries again later.
        """
        if key not in self._published:
            if not self.fence(key):
                return Completion.LOST
            publish()
            self._published[key] = run_state
        marked = self.mark_completed(key, self._published[key])
        del self._published[key]
        return Completion.MARKED if marked else Completion.TAKEN_OVER

    def mark_completed(self, key: str, run_state: str) -> bool:
        """Mark ``key``'s run completed as the lease holder, ending the lease.

        Returns:
            False when another owner took the lease over since the fence (a publish that
            outlasted ``fence_ttl``): the new holder sends its own reply.
        """
        self._drop(key)
        return self._store.mark_completed(key, run_state, owner=self._owner)

    def abandon(self, key: str) -> bool:
        """Stop tracking ``key``'s run as the lease holder; False when the lease was lost."""
        self._drop(key)
        return self._store.abandon_tracking(key, owner=self._owner)

    def release_all(self) -> None:
        """Give up every lease of this owner at once (a clean stop); never raise."""
        with self._lock:
            self._held.clear()
        try:
            self._store.release_leases(self._owner)
        except Exception:  # leases then expire by themselves; stopping must not fail
            log.exception("tracking_release_failed")

    def _drop(self, key: str) -> None:
        with self._lock:
            self._held.discard(key)
