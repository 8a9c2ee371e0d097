"""The ``IdempotencyStore`` Protocol: the seam the pipeline and the tracker use (spec §3).

The Protocol speaks in plain values (``consumer.store.entry``) and promises only what one
SQL statement or transaction per call can keep.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Protocol, TypeAlias

from consumer.store.deferral_protocol import DeferralStore
from consumer.store.entry import (
    Coordinates,
    EntryStatus,
    RememberedRefusal,
    RequestOrigin,
    RerunMark,
    StoredEntry,
)

Clock: TypeAlias = Callable[[], datetime]
"""Returns the current time as a timezone-aware datetime; injectable for tests."""

DEFAULT_PURGE_BATCH = 1000  # rows per purge call: bounds how long one DELETE holds its locks


class IdempotencyStore(DeferralStore, Protocol):
    """Remembers, per idempotency key, which request claimed it and which run it made.

    It keeps deferred requests too (``DeferralStore``, issue 30), which retention leaves be.

    Every method is safe to call from many threads at once. Entries older than the
    retention window are invisible to every method, whether or not they were purged yet;
    so are a key's re-run marks, which live and die with the entry they were written under
    (release, expiry, purge, a new claim of the expired key) and never outlive the window.
    """

    def get(self, key: str) -> StoredEntry | None:
        """Return the live entry for ``key``, or None if unknown or expired.

        Args:
            key: the idempotency key.

        Returns:
            The entry, or None.
        """
        ...

    def get_many(self, keys: Collection[str]) -> dict[str, StoredEntry]:
        """Return the live entries of ``keys`` in one read; unknown or expired keys are absent.

        Args:
            keys: idempotency keys.

        Returns:
            Key to entry, for the keys that have a live entry.
        """
        ...

    def mark_pending(
        self,
        key: str,
        *,
        fingerprint: str,
        dag_id: str,
        dag_run_id: str,
        origin: RequestOrigin | None = None,
    ) -> StoredEntry:
        """Claim ``key`` before the Airflow POST (spec §3), atomically.

        Inserts a ``pending`` entry unless a live entry exists; an existing entry is
        returned unchanged, whatever its fingerprint or status. The caller compares the
        returned fingerprint and origin with its own: another fingerprint is
        ``idempotency_key_reused``, another origin is another request's claim.

        Args:
            key: the idempotency key.
            fingerprint: the fingerprint of the request claiming the key.
            dag_id: the DAG the request targets.
            dag_run_id: the run id derived from the key.
            origin: the claiming request's origin, so that its re-delivery (on any
                replica) is recognised as the request that may have made the run.

        Returns:
            The entry that holds the key after the call: the new one or the existing one.
        """
        ...

    def record(
        self,
        key: str,
        *,
        fingerprint: str,
        dag_id: str,
        dag_run_id: str,
        status: EntryStatus,
        run_state: str | None = None,
        logical_date: str | None = None,
        run_url: str | None = None,
        track: bool = False,
        origin: RequestOrigin | None = None,
    ) -> StoredEntry:
        """Record the final outcome for ``key``: the run it maps to.

        An upsert: it overwrites a live entry's fields but keeps its ``created_at``, and
        creates the entry if none is live (a lost or purged pending mark). A ``duplicate``
        leaves an entry another request wrote unchanged. A run already recorded under the
        key keeps what belongs to the run: its tracking (``completed_at``,
        ``abandoned_at``, lease), the final state seen by the tracker and a ``triggered``
        status (``consumer.store.recording``); a new run starts untracked-so-far.

        Args:
            key: the idempotency key.
            fingerprint: the fingerprint of the request.
            dag_id: the DAG the run belongs to.
            dag_run_id: the run's id.
            status: ``triggered`` or ``duplicate``.
            run_state: Airflow's state of the run, if known.
            logical_date: the run's logical date as ISO 8601 text, if any.
            run_url: the run's page in the Airflow UI, if known.
            track: whether the request asked for a completion reply.
            origin: the request's coordinates, correlation id, reply topic, route and
                trace context, which the ``completed`` reply of a tracked run echoes.

        Returns:
            The entry as stored (the unchanged one when ``recording.may_overwrite`` refused).
        """
        ...

    def release(self, key: str, *, refusal: RememberedRefusal | None = None) -> bool:
        """Forget ``key`` and its re-run marks: its attempt ended without creating a run.

        Use after rejections and Airflow data errors (400, 404, 422) so a corrected
        request may reuse the key. Never after ``airflow_unavailable``: the POST may
        have been accepted, and the pending mark is what recognises that run later.

        Args:
            key: the idempotency key.
            refusal: the answer of the record that releases it, remembered in the same
                transaction (an upsert by key and coordinates) for ``refusal_at``; its
                ``created_at`` is set by the store.

        Returns:
            Whether an entry was removed.
        """
        ...

    def refusal_at(self, key: str, at: Coordinates) -> RememberedRefusal | None:
        """Return the refusal remembered for the record at ``at`` naming ``key``, or None.

        Remembered refusals outlive their key's entry (another request may hold the key
        now) and are purged by ``purge``/``purge_expired`` after the retention window,
        counted from their own ``created_at``.

        Args:
            key: the idempotency key.
            at: the record's (topic, partition, offset).

        Returns:
            The refusal, or None.
        """
        ...

    def get_rerun(self, key: str, rerun_id: str) -> RerunMark | None:
        """Return the re-run mark of ``key`` named ``rerun_id``, or None.

        Args:
            key: the idempotency key.
            rerun_id: the request's ``rerun.id``.

        Returns:
            The mark, or None when this re-run is unknown (or forgotten with its key).
        """
        ...

    def mark_rerun(
        self, key: str, rerun_id: str, *, evidence: str | None, at: Coordinates
    ) -> RerunMark:
        """Claim the re-run ``rerun_id`` of ``key`` before the clear call, atomically.

        Inserts a ``pending`` mark unless one exists for (key, rerun_id); an existing
        mark is returned unchanged (``claimed_here`` False).

        Args:
            key: the idempotency key.
            rerun_id: the request's ``rerun.id``.
            evidence: the run's clear evidence read before the clear, or None.
            at: the request record's (topic, partition, offset).

        Returns:
            The mark that holds (key, rerun_id) after the call.
        """
        ...

    def record_rerun(
        self,
        key: str,
        rerun_id: str,
        *,
        run_state: str | None,
        at: Coordinates,
        track: bool = False,
        origin: RequestOrigin | None = None,
    ) -> None:
        """Note that the re-run ``rerun_id`` of ``key`` is done (an upsert of a ``done`` mark).

        With ``track``, the key's run is tracked again from now on: ``track`` set,
        ``completed_at``, ``abandoned_at`` and the tracking lease cleared (a tracker that
        leased the row before cannot complete it), ``created_at`` set to now (the tracking
        horizon and the retention count from the re-run), ``run_state`` set, and ``origin``
        replacing the entry's, so that the ``completed`` reply of the cleared run goes to
        the re-run request's reply topic.

        Args:
            key: the idempotency key.
            rerun_id: the request's ``rerun.id``.
            run_state: Airflow's state of the run after the clear, if known.
            at: the request record's (topic, partition, offset).
            track: whether the re-run request asked for a completion reply.
            origin: the re-run request's origin (used with ``track``).
        """
        ...

    def tracked_runs(self, limit: int = 1000) -> list[StoredEntry]:
        """Return live tracked entries whose run is not yet seen complete, oldest first.

        Args:
            limit: at most this many entries.

        Returns:
            Entries with ``track`` set, a final status, no ``completed_at`` and no
            ``abandoned_at``.
        """
        ...

    def lease_tracked(self, owner: str, ttl: timedelta, limit: int = 1000) -> list[StoredEntry]:
        """Lease up to ``limit`` tracked runs to ``owner`` for ``ttl``, atomically.

        Takes entries as ``tracked_runs`` lists them whose lease is free, expired or
        already ``owner``'s (renewing it), least recently leased first, so that every
        tracked run gets its turn however many there are. While a lease lasts no other
        owner gets the entry: each run is watched by one replica at a time, and by
        another one once its holder stopped renewing (died or stalled).

        A store shared by hosts times leases by its own clock (the database server's),
        never by the callers': replicas whose clocks disagree by minutes still agree on
        when a lease ends.

        Args:
            owner: the leasing process's id, unique per process.
            ttl: how long the lease lasts unless renewed.
            limit: at most this many entries.

        Returns:
            The leased entries, oldest first.
        """
        ...

    def renew_leases(self, owner: str, ttl: timedelta, keys: Collection[str]) -> set[str]:
        """Extend ``owner``'s leases on ``keys`` to at least ``ttl`` from now, atomically per row.

        The fence of a tracked run's ``completed`` reply: a key comes back only while
        ``owner`` still holds it, that is no other owner took it over since (a lease that
        ran out but that nobody took is still ``owner``'s, and is renewed), and the run is
        still tracked. A renewal never shortens a lease (a longer one taken before a
        publish outlives a shorter renewal of the same key).

        Args:
            owner: the process id given to ``lease_tracked``.
            ttl: how long the leases last from now, at least.
            keys: idempotency keys ``owner`` leased.

        Returns:
            The keys of ``keys`` that ``owner`` holds, their leases extended.
        """
        ...

    def release_leases(self, owner: str) -> int:
        """Give up every lease ``owner`` holds (a clean shutdown hands runs over at once).

        Args:
            owner: the process id given to ``lease_tracked``.

        Returns:
            How many leases were released.
        """
        ...

    def mark_completed(self, key: str, run_state: str, *, owner: str | None = None) -> bool:
        """Note that the tracked run of ``key`` reached the final ``run_state``; end its lease.

        Args:
            key: the idempotency key.
            run_state: Airflow's final state of the run.
            owner: when given, only the holder of the key's lease may mark it (as
                ``renew_leases`` judges holding); None marks whoever holds it.

        Returns:
            Whether a live entry was updated.
        """
        ...

    def abandon_tracking(self, key: str, *, owner: str | None = None) -> bool:
        """Stop tracking the run of ``key`` without it having been seen complete; end its lease.

        The entry leaves ``tracked_runs``; its ``track`` flag and ``run_state`` are kept.

        Args:
            key: the idempotency key.
            owner: when given, only the holder of the key's lease may abandon it.

        Returns:
            Whether a live entry was updated.
        """
        ...

    def purge(self, older_than: datetime) -> int:
        """Delete entries created before ``older_than``, with their re-run marks.

        Remembered refusals created before ``older_than`` are deleted too.

        Args:
            older_than: a timezone-aware cut-off.

        Returns:
            How many entries and remembered refusals were deleted (re-run marks uncounted).
        """
        ...

    def purge_expired(self, batch: int = DEFAULT_PURGE_BATCH) -> int:
        """Delete at most ``batch`` rows older than the retention window.

        Entries go first, with their re-run marks; remembered refusals fill what the
        entries left of the batch. Call it again while it returns ``batch``: bounded
        deletes keep each call short.

        Args:
            batch: the most entries and remembered refusals one call deletes.

        Returns:
            How many entries and remembered refusals were deleted (re-run marks uncounted).
        """
        ...

    def close(self) -> None:
        """Release the store's resources; calling it again does nothing."""
        ...
