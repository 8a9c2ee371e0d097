"""Read trigger requests: subscribe, poll, pause/resume for backpressure, commit, rebalance.

Only committed transactional data is read (``read_committed``: an aborted request never
triggers). A record batch that cannot be read (corrupt, or an unknown codec) fails the
whole ``poll`` in kafka-python; the source then polls each partition alone to find the
one that fails, leaves it paused at that offset (``stalled``) and goes on with the rest.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable

import structlog
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import CorruptRecordError, UnsupportedCodecError
from kafka.structs import OffsetAndMetadata

from consumer.kafka_io.clients import Connection, open_consumer
from consumer.kafka_io.offsets import Partition
from consumer.kafka_io.records import to_inbound
from consumer.record import InboundRecord

# what kafka-python raises from poll() for a batch it cannot decode: a failed CRC, a codec
# it has no library for, or a decompressor refusing the bytes
UNREADABLE: tuple[type[Exception], ...] = (
    CorruptRecordError,
    UnsupportedCodecError,
    ValueError,
    struct.error,
    RuntimeError,
)

log = structlog.get_logger(__name__)

PartitionsCallback = Callable[[set[Partition]], None]
# The largest fetch response read: kafka-python's default (1,000,000 bytes) is below one
# record a topic may legally hold, and a bigger response closes the connection for ever.
MAX_FRAME_BYTES = 100 * 1024 * 1024
COMMIT_TIMEOUT_MS = 5_000  # a commit never holds the loop longer (spec §3: retried next loop)
PROBE_POLLS = 3  # polls of one partition alone while looking for an unreadable batch
PROBE_TIMEOUT_MS = 500


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    def __init__(self, on_assigned: PartitionsCallback, on_revoked: PartitionsCallback) -> None:
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._on_revoked({Partition(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._on_assigned({Partition(tp.topic, tp.partition) for tp in assigned})


class RequestSource:
    """A KafkaConsumer in a group with manual commits; used from one thread only."""

    def __init__(
        self,
        connection: Connection,
        *,
        topic: str,
        group_id: str,
        client_id: str,
        on_assigned: PartitionsCallback,
        on_revoked: PartitionsCallback,
        extra_topics: tuple[str, ...] = (),
    ) -> None:
        """Subscribe to ``topic`` (and ``extra_topics``) in ``group_id``.

        Args:
            connection: the settings, or ``security.connection_options(settings)``.
            topic: the request topic.
            group_id: the consumer group all replicas share.
            client_id: names this worker in broker logs.
            on_assigned: called (inside ``poll``) with newly assigned partitions.
            on_revoked: called (inside ``poll``) before partitions are taken away; the
                last chance to commit finished work for them.
            extra_topics: the topics routes read, consumed in the same group.
        """
        self._consumer = open_consumer(
            connection,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,  # spec §3: commit only after the reply is acked
            auto_offset_reset="earliest",  # a new group must not skip requests already queued
            max_poll_interval_ms=600_000,
            session_timeout_ms=10_000,  # a crashed member is replaced within 10 s
            # a request whose answer was lost (a network blackhole) is given up after 30 s,
            # not kafka-python's 305 s: until then the coordinator lookup it blocks keeps
            # every commit failing. Above the session timeout, so a JoinGroup that waits
            # for a dead member to expire is not cut short.
            request_timeout_ms=30_000,
            heartbeat_interval_ms=3_000,
            receive_message_max_bytes=MAX_FRAME_BYTES,
            isolation_level="read_committed",  # aborted transactions never trigger
        )
        self._stalled: dict[Partition, str] = {}  # unreadable partitions, paused for good
        self._consumer.subscribe(
            [topic, *extra_topics],
            listener=_Listener(on_assigned, self._forget_stalled_then(on_revoked)),
        )

    def poll(self, *, max_records: int, timeout: float) -> list[InboundRecord]:
        """Fetch up to ``max_records`` records; also runs heartbeats and rebalance callbacks.

        A batch that cannot be read stalls its partition (``stalled``), never the others.
        """
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except UNREADABLE as exc:
            return self._isolate_unreadable(exc, max_records)
        return _records(batches)

    def stalled(self) -> dict[Partition, str]:
        """Partitions stopped at a batch that cannot be read, with the reason."""
        return dict(self._stalled)

    def _isolate_unreadable(self, error: Exception, max_records: int) -> list[InboundRecord]:
        """Poll each fetching partition alone; stall those that fail, keep what the rest gave."""
        log.warning("record_batch_unreadable", error=str(error))
        self._drop_failed_fetch()
        active = [tp for tp in self._consumer.assignment() if tp not in self._consumer.paused()]
        self._consumer.pause(*active)
        found: list[InboundRecord] = []
        try:
            for tp in active:
                if len(found) >= max_records:
                    break
                found.extend(self._probe(tp, max_records - len(found)))
        finally:
            resumable = [tp for tp in active if _partition(tp) not in self._stalled]
            if resumable:
                self._consumer.resume(*resumable)
        return found

    def _probe(self, tp: TopicPartition, max_records: int) -> list[InboundRecord]:
        self._consumer.resume(tp)
        try:
            for _ in range(PROBE_POLLS):
                batches = self._consumer.poll(timeout_ms=PROBE_TIMEOUT_MS, max_records=max_records)
                if batches:
                    return _records(batches)
        except UNREADABLE as exc:
            self._drop_failed_fetch()
            offset = self._consumer.position(tp, timeout_ms=0)
            reason = f"unreadable record batch at offset {offset}: {exc}"
            self._stalled[_partition(tp)] = reason
            log.error("partition_stalled", partition=str(_partition(tp)), reason=reason)
        finally:
            self._consumer.pause(tp)
        return []

    def _drop_failed_fetch(self) -> None:
        """Discard the fetched data whose reading failed, so its partition is fetched afresh.

        kafka-python keeps the batch that raised as its next records to return, with a spent
        iterator: a poll while its partition is fetchable then loops for ever without
        returning (its ``fetched_records`` never drains records that yield nothing).
        """
        fetcher = getattr(self._consumer, "_fetcher", None)  # no public API resets it
        failed = getattr(fetcher, "_next_partition_records", None)
        if failed:
            failed.drain()

    def _forget_stalled_then(self, on_revoked: PartitionsCallback) -> PartitionsCallback:
        def revoked(partitions: set[Partition]) -> None:
            for partition in partitions:
                self._stalled.pop(partition, None)  # its next owner meets the batch itself
            on_revoked(partitions)

        return revoked

    def assignment(self) -> set[Partition]:
        """The partitions this member owns now."""
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause(self, partitions: Iterable[Partition] | None = None) -> None:
        """Stop fetching from ``partitions`` (every owned one by default); membership stays."""
        if partitions is None:
            self._consumer.pause(*self._consumer.assignment())
        else:
            self._consumer.pause(*(TopicPartition(p.topic, p.partition) for p in partitions))

    def resume(self) -> None:
        """Fetch again from every paused partition, except stalled ones."""
        paused = [tp for tp in self._consumer.paused() if _partition(tp) not in self._stalled]
        if paused:
            self._consumer.resume(*paused)

    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit ``offsets`` (the next offset to read, per partition), waiting a few seconds.

        Raises:
            KafkaError: the commit failed or timed out (a rebalance, a coordinator move,
                a member expelled after a long pause); nothing may be assumed committed.
        """
        if offsets:
            self._consumer.commit(
                {
                    TopicPartition(p.topic, p.partition): OffsetAndMetadata(offset, "", -1)
                    for p, offset in offsets.items()
                },
                timeout_ms=COMMIT_TIMEOUT_MS,
            )

    def positions(self) -> dict[Partition, int]:
        """The next offset to fetch of each owned partition whose position is known.

        Reads the consumer's own state: no broker round trip, so the loop never waits.
        """
        known = {}
        for tp in self._consumer.assignment():
            position = self._consumer.position(tp, timeout_ms=0)
            if position is not None:
                known[_partition(tp)] = position
        return known

    def broker_silence(self) -> float:
        """Seconds since the group coordinator last answered a heartbeat (inf: never)."""
        # kafka-python keeps this on its coordinator's Heartbeat; no public API exposes it
        heartbeat = getattr(getattr(self._consumer, "_coordinator", None), "heartbeat", None)
        last = getattr(heartbeat, "last_receive", float("-inf"))
        return time.time() - last

    def close(self) -> None:
        """Leave the group (no autocommit: uncommitted work is re-read by the next owner)."""
        self._consumer.close(autocommit=False)


def _partition(tp: TopicPartition) -> Partition:
    return Partition(tp.topic, tp.partition)


def _records(batches: dict[TopicPartition, list[object]]) -> list[InboundRecord]:
    return [to_inbound(record) for records in batches.values() for record in records]
