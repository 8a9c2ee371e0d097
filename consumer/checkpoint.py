"""Checkpoint: the one owner of what may be committed, and of the in-flight bound (spec §3).

Each fetched record gets a ``Ticket`` (its partition, the epoch of that partition's
assignment, its offset). Whatever happens to the record, exactly one of ``done`` (its
answer was acknowledged: its offset may be committed) or ``abandon`` (no answer: the
partition's owner processes it again) ends the ticket; the first call wins, later ones do
nothing. Either frees the record's in-flight slot. An event fanned out to several routes
splits its ticket (``split``) into one share per derived request::

    ticket(record) ──► owned()? ──► done()    offset done (if still owned), slot freed
                                └─► abandon() slot freed, offset left for the owner
        └─► split(n) ─► n shares: done once every share is done, abandoned if any is

The loop thread fetches, commits and handles rebalances; tickets end on any thread. A
partition's epoch is bumped at every assignment change (and a backwards offset reset), so
work fetched under an older epoch is not owned: it starts no Airflow call and commits
nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import structlog
from kafka.errors import KafkaError

from consumer.kafka_io.offsets import OffsetTracker, Partition
from consumer.metrics import Metrics
from consumer.record import InboundRecord

log = structlog.get_logger(__name__)

# seconds between routine commits: each is a broker round trip, and a crash re-reads at most
# this much answered work (answered again from the store, as duplicates)
COMMIT_INTERVAL = 1.0
# a full loop waits until this share of its slots is free, so that a poll fetches (and the
# store reads) a batch instead of one record per freed slot
REFILL_SHARE = 4

Finish = Callable[[bool], None]
"""Ends a ticket: True once its answer was acknowledged, False when it was abandoned."""


class Committer(Protocol):
    """The consumer side a checkpoint commits through (``RequestSource`` fits)."""

    def positions(self) -> Mapping[Partition, int]:
        """The fetch position of each assigned partition."""
        ...

    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit ``offsets`` to the group coordinator; raises ``KafkaError`` on failure."""
        ...


class Ticket:
    """One fetched record's claim on its offset and its in-flight slot; thread-safe."""

    __slots__ = ("_finish", "_lock", "_open", "_owned")

    def __init__(self, owned: Callable[[], bool], finish: Finish) -> None:
        """Create an open ticket.

        Args:
            owned: whether the record's partition is still owned under its fetch epoch.
            finish: called once, with whether the record was answered.
        """
        self._owned = owned
        self._finish = finish
        self._lock = threading.Lock()
        self._open = True

    def owned(self) -> bool:
        """Whether this worker still owns the record's partition as when it was fetched."""
        return self._owned()

    def done(self) -> None:
        """The record's answer was acknowledged: its offset may be committed."""
        self._close(answered=True)

    def abandon(self) -> None:
        """The record gets no answer here: only its slot is freed."""
        self._close(answered=False)

    def split(self, shares: int) -> list[Ticket]:
        """One ticket per derived request; this one ends when the last of them ends.

        Args:
            shares: how many derived requests (0: done at once, an ignored event).

        Returns:
            The shares; this ticket is done when all are done, abandoned when any is.
        """
        if shares == 0:
            self.done()
            return []
        state = {"left": shares, "answered": True}
        lock = threading.Lock()

        def finish_share(answered: bool) -> None:
            with lock:
                state["left"] -= 1
                state["answered"] = state["answered"] and answered
                last, all_answered = state["left"] == 0, bool(state["answered"])
            if last:
                self._close(answered=all_answered)

        return [Ticket(self._owned, finish_share) for _ in range(shares)]

    def _close(self, *, answered: bool) -> None:
        with self._lock:
            if not self._open:
                return
            self._open = False
        self._finish(answered)


class Checkpoint:
    """Tickets, the in-flight bound, epochs and commits of one consumer-group member."""

    def __init__(self, source: Committer, max_in_flight: int, metrics: Metrics) -> None:
        """Start with nothing fetched and nothing assigned.

        Args:
            source: the consumer the offsets are committed through.
            max_in_flight: bound on fetched records whose ticket has not ended.
            metrics: counts failed commits.
        """
        self.offsets = OffsetTracker()
        self._source = source
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        # a full loop waits until in flight drops to this, so that a poll fetches a batch
        self._refill_at = max_in_flight - max(1, max_in_flight // REFILL_SHARE)
        self._room = threading.Event()  # set once in flight is down to the refill mark
        self._in_flight = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified as tickets end
        self._epochs: dict[Partition, int] = {}  # bumped at every assignment change
        # the partitions assigned since their last revoke: only these are ever committed
        self._assigned: set[Partition] = set()
        self._next_commit = 0.0

    # -- tickets (the loop thread issues them; any thread ends them) --------------------------
    def ticket(self, record: InboundRecord) -> Ticket:
        """Count ``record`` in flight and track its offset.

        Args:
            record: a record just fetched.

        Returns:
            Its ticket, owned under its partition's current epoch.
        """
        partition = Partition(record.topic, record.partition)
        with self._lock:
            self._in_flight += 1
        try:
            generation = self.offsets.started(partition, record.offset)
        except ValueError:  # the position moved back: topic re-created, truncated, or reset
            log.warning("offset_reset", partition=str(partition), offset=record.offset)
            self._new_epoch([partition])
            self.offsets.revoke([partition])
            generation = self.offsets.started(partition, record.offset)
        epoch = self._epochs.get(partition, 0)

        def owned() -> bool:
            return self._epochs.get(partition, 0) == epoch

        def finish(answered: bool) -> None:
            # the generation makes it atomic: ignored once the partition's state was replaced
            if answered and owned():
                self.offsets.done(partition, record.offset, generation)
            self._free_slot()

        return Ticket(owned, finish)

    def in_flight(self) -> int:
        """Records fetched whose ticket has not ended."""
        with self._lock:
            return self._in_flight

    def full(self) -> bool:
        """Whether every in-flight slot is taken."""
        return self.in_flight() >= self._max_in_flight

    def room(self) -> int:
        """How many records the next poll may fetch (at least 1)."""
        return max(self._max_in_flight - self.in_flight(), 1)

    def wait_for_room(self, timeout: float) -> None:
        """While every slot is taken, wait (at most ``timeout``) until the refill mark.

        Room is a ``REFILL_SHARE`` of the slots, so the next poll fetches a batch. Waking as
        soon as that much is done keeps fast work (duplicates answered from the store)
        fetching without pausing: a paused poll cannot be woken early, and kafka-python
        drops the records it buffered for a paused partition.
        """
        if not self.full():
            return
        # only the loop thread issues tickets, so once in flight is down to the mark it stays
        self._room.clear()
        if self.in_flight() > self._refill_at:
            self._room.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every ticket has ended (a drain: answers acknowledged); False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _free_slot(self) -> None:
        # the loop is woken only once there is room for a batch: waking it at every freed
        # slot cost a thread wake-up per request for nothing
        with self._lock:
            self._in_flight -= 1
            room = self._in_flight <= self._refill_at
            if not self._in_flight:
                self._idle.notify_all()
        if room:
            self._room.set()

    # -- commits and rebalances (the loop thread) ---------------------------------------------
    def commit_due(self) -> None:
        """Commit every partition's done prefix once ``COMMIT_INTERVAL`` has passed."""
        now = time.monotonic()
        if now >= self._next_commit:
            self._next_commit = now + COMMIT_INTERVAL
            self.commit()

    def commit(self) -> None:
        """Commit every owned partition's done prefix; a failure is logged and retried later.

        Only partitions assigned since their last revoke count: until a rejoin ends, the
        consumer still reports a revoked partition's old position, and skipping to it would
        commit past records nobody answered (found by the nemesis).
        """
        owned = self._assigned
        positions = self._source.positions()
        # gaps past a position need no answer
        self.offsets.skip_to({p: offset for p, offset in positions.items() if p in owned})
        offsets = {p: offset for p, offset in self.offsets.committable().items() if p in owned}
        if not offsets:
            return
        try:
            self._source.commit(offsets)
        except KafkaError as exc:  # rebalance, coordinator moved, member expelled: rejoin
            log.warning("commit_failed", error=str(exc))
            self._metrics.count_commit_failure()
            return
        self.offsets.committed(offsets)

    def assigned(self, partitions: Iterable[Partition]) -> None:
        """New partitions: a new epoch and a clean offset state for each."""
        partitions = list(partitions)
        self._new_epoch(partitions)
        self.offsets.revoke(partitions)  # nothing of an earlier assignment carries over
        self._assigned.update(partitions)

    def revoked(self, partitions: Iterable[Partition]) -> None:
        """Commit what is done, then disown the partitions' unfinished work (spec §3).

        The new owner answers the unfinished records again; their tickets end here whenever
        their work stops, and commit nothing.
        """
        self.commit()
        partitions = list(partitions)
        self._assigned.difference_update(partitions)
        self._new_epoch(partitions)
        self.offsets.revoke(partitions)

    def _new_epoch(self, partitions: Iterable[Partition]) -> None:
        for partition in partitions:
            self._epochs[partition] = self._epochs.get(partition, 0) + 1
