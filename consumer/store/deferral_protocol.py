"""The ``DeferralStore`` Protocol: the store's half of per-DAG flow control (issue 30).

Deferred requests, the one lease of the replica that releases them, and each DAG's rate
state. ``IdempotencyStore`` includes it; the releaser may ask for this narrower seam. Every
time that replicas must agree on (due, lease, fence, ``created_at``) is the store's own
clock: the database server's on PostgreSQL, the injected clock on SQLite (one host).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Protocol

from consumer.store.deferred import DeferredCount, DeferredRequest
from consumer.store.entry import Coordinates

DEFAULT_DUE_LIMIT = 1000  # rows per due_deferred call: bounds one read


class DeferralStore(Protocol):
    """Keeps deferred requests durably until released, and the releaser's lease and rates.

    Deferred rows are no idempotency entries: retention (``purge``, ``purge_expired``)
    never deletes them; only ``forget_deferred`` does, once the request is answered.
    """

    def defer(self, request: DeferredRequest) -> bool:
        """Park ``request``, unless its (key, topic, partition, offset) is parked already.

        Args:
            request: the request; its ``seq`` and ``created_at`` are ignored (the store
                assigns them).

        Returns:
            True when this call inserted it; False when the row existed (left unchanged).
        """
        ...

    def due_deferred(
        self, limit: int = DEFAULT_DUE_LIMIT, *, dag_id: str | None = None
    ) -> list[DeferredRequest]:
        """Return the requests whose ``due_at`` is NULL or passed, lowest ``seq`` first.

        Args:
            limit: at most this many rows.
            dag_id: only this DAG's rows (the releaser reads each DAG's apart, so that one
                DAG's backlog at its limit never hides another's); None: every DAG's.

        Returns:
            The due requests in arrival order.
        """
        ...

    def forget_deferred(self, key: str, at: Coordinates) -> bool:
        """Delete the deferred request of ``key`` from the record at ``at`` (it was answered).

        Args:
            key: the idempotency key.
            at: the request record's (topic, partition, offset).

        Returns:
            Whether it was there.
        """
        ...

    def deferred_counts(self) -> list[DeferredCount]:
        """Return, per (dag_id, reason), how many requests wait and the oldest's ``created_at``.

        Returns:
            One count per pair that has rows, by dag_id then reason.
        """
        ...

    def release_deferred(self, dag_id: str) -> int:
        """Let the waiting requests of ``dag_id`` through: ``released`` set, ``due_at`` cleared.

        Args:
            dag_id: the DAG.

        Returns:
            How many rows were released.
        """
        ...

    def take_flow_lease(self, owner: str, ttl: timedelta) -> bool:
        """Take or extend the one store-wide lease of the releasing replica, atomically.

        Taken when free, expired or already ``owner``'s (then it lasts ``ttl`` from now);
        of replicas racing for a free lease exactly one wins.

        Args:
            owner: the process id, unique per process.
            ttl: how long the lease lasts unless taken again.

        Returns:
            Whether ``owner`` holds the lease now; False when another owner holds it.
        """
        ...

    def drop_flow_lease(self, owner: str) -> None:
        """Give the lease up if ``owner`` holds it (a clean shutdown hands it over at once).

        Args:
            owner: the process id given to ``take_flow_lease``.
        """
        ...

    def rate_next(self, dag_ids: Collection[str]) -> dict[str, datetime]:
        """Return, per DAG, the earliest time its next run may start (its rate state).

        Args:
            dag_ids: the DAGs asked about.

        Returns:
            DAG to instant (UTC); a DAG with no state recorded is absent.
        """
        ...

    def set_rate_next(self, dag_id: str, at: datetime, owner: str) -> bool:
        """Record when ``dag_id``'s next run may start, only while ``owner`` holds the lease.

        The fence: the lease is checked in the same statement or transaction as the
        write, so a replica that lost the lease (stalled past its ``ttl``) cannot undo
        the new holder's rate state.

        Args:
            dag_id: the DAG.
            at: a timezone-aware instant.
            owner: the process id given to ``take_flow_lease``.

        Returns:
            Whether it was recorded; False when ``owner`` does not hold an unexpired lease.
        """
        ...

    def store_now(self) -> datetime:
        """Return the store's clock, the one ``due_at``, leases and ``created_at`` follow.

        Returns:
            The current instant, UTC (the database server's clock on PostgreSQL).
        """
        ...
