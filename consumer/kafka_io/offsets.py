"""OffsetTracker: which offsets may be committed, per partition (spec §3, Delivery).

Pure and thread-safe: it imports no Kafka client and does no I/O. The worker tells it
when a record is fetched (``started``) and when its reply and dead-letter record are
acknowledged (``done``, in any order); ``committable`` then gives, per partition, the
offset after the longest done prefix, which is all a commit may cover.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class Partition(NamedTuple):
    """One topic partition; field-compatible with kafka-python's ``TopicPartition``."""

    topic: str
    partition: int


@dataclass
class _PartitionState:
    """Offsets of one partition since its last commit, in fetch order."""

    # started offsets not yet below the watermark, oldest first
    window: deque[int] = field(default_factory=deque)
    # the subset of ``window`` still being worked on
    working: set[int] = field(default_factory=set)
    # the subset of ``window`` whose work is done
    done: set[int] = field(default_factory=set)
    last_started: int = -1
    # 1 + the highest offset whose whole (started) prefix is done; None before any
    watermark: int | None = None
    committed: int | None = None

    def advance(self) -> None:
        while self.window and self.window[0] in self.done:
            offset = self.window.popleft()
            self.done.discard(offset)
            self.watermark = offset + 1


class OffsetTracker:
    """Per-partition contiguous-done watermarks, forgotten on revoke.

    Offsets must be started in increasing order per partition, as a consumer fetches
    them; gaps between started offsets (compaction, transaction markers) never block,
    because only started offsets are waited for.
    """

    def __init__(self) -> None:
        """Create a tracker that knows no partition."""
        self._lock = threading.Lock()
        self._partitions: dict[Partition, _PartitionState] = {}
        self._in_flight = 0

    def started(self, partition: Partition, offset: int) -> object:
        """Note that the record at ``offset`` was fetched and its work begins.

        A partition unknown so far (newly assigned, or assigned again after a revoke)
        starts with a clean state.

        Args:
            partition: the record's partition.
            offset: the record's offset; greater than any offset started before on it.

        Returns:
            The partition's generation: ``done`` with it is ignored once the partition was
            revoked (and perhaps started again), atomically with the marking.

        Raises:
            ValueError: ``offset`` is not greater than the last offset started on the
                partition (a seek backwards must be preceded by ``revoke``).
        """
        with self._lock:
            state = self._partitions.setdefault(partition, _PartitionState())
            if offset <= state.last_started:
                raise ValueError(
                    f"offset {offset} of {partition} started after offset {state.last_started}; "
                    "offsets must increase per partition (revoke before seeking back)"
                )
            state.last_started = offset
            state.window.append(offset)
            state.working.add(offset)
            self._in_flight += 1
            return state

    def done(self, partition: Partition, offset: int, generation: object | None = None) -> bool:
        """Note that the work for ``offset`` is finished: its reply/DLQ records are acked.

        Calls for revoked or unknown partitions, for offsets never started, of another
        generation, or repeated calls are ignored, so a task finishing after its partition
        was revoked cannot make this owner commit it (nor a record fetched again since).

        Args:
            partition: the record's partition.
            offset: the record's offset.
            generation: what ``started`` returned for it; None accepts any.

        Returns:
            Whether the call changed anything.
        """
        with self._lock:
            state = self._partitions.get(partition)
            if state is None or offset not in state.working:
                return False
            if generation is not None and state is not generation:
                return False
            state.working.remove(offset)
            state.done.add(offset)
            self._in_flight -= 1
            state.advance()
            return True

    def skip_to(self, positions: Mapping[Partition, int]) -> None:
        """Let idle partitions commit up to the consumer's fetch position.

        A partition with nothing started and unfinished has answered every record the
        consumer returned, so the offsets up to its position hold nothing left to answer
        (transaction markers, aborted records): committing them brings lag to 0.

        Args:
            positions: the next offset the consumer fetches, per owned partition.
        """
        with self._lock:
            for partition, position in positions.items():
                state = self._partitions.setdefault(partition, _PartitionState())
                # a partition never read (position 0) has nothing to skip: no commit
                floor = max(0 if state.watermark is None else state.watermark, state.last_started)
                if not state.window and position > floor:
                    state.watermark = position

    def committable(self) -> dict[Partition, int]:
        """Return, per partition that advanced since its last commit, the offset to commit.

        The value is Kafka's "next offset to read": 1 + the highest offset whose whole
        prefix of started offsets since the last commit is done.

        Returns:
            A possibly empty mapping of partition to offset.
        """
        with self._lock:
            return {
                partition: state.watermark
                for partition, state in self._partitions.items()
                if state.watermark is not None
                and (state.committed is None or state.watermark > state.committed)
            }

    def committed(self, offsets: Mapping[Partition, int]) -> None:
        """Record that ``offsets`` were committed; revoked partitions are ignored.

        Args:
            offsets: partition to committed offset, as passed to the consumer's commit.
        """
        with self._lock:
            for partition, offset in offsets.items():
                state = self._partitions.get(partition)
                if state is not None and (state.committed is None or offset > state.committed):
                    state.committed = offset

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Forget all state of ``partitions``: nothing of theirs is committed by this owner.

        Args:
            partitions: the partitions taken away by a rebalance (or closed).
        """
        with self._lock:
            for partition in partitions:
                state = self._partitions.pop(partition, None)
                if state is not None:
                    self._in_flight -= len(state.working)

    def in_flight(self, partition: Partition | None = None) -> int:
        """Count offsets started but not done.

        Args:
            partition: count only this partition; all partitions if None.

        Returns:
            The number of offsets in flight.
        """
        with self._lock:
            if partition is None:
                return self._in_flight
            state = self._partitions.get(partition)
            return 0 if state is None else len(state.working)

    def partitions(self) -> frozenset[Partition]:
        """Return the partitions the tracker holds state for."""
        with self._lock:
            return frozenset(self._partitions)
