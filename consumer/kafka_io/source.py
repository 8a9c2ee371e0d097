"""Read trigger requests: subscribe, poll, pause/resume for backpressure, commit, rebalance."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumer.kafka_io.clients import Connection, open_consumer
from consumer.kafka_io.offsets import Partition
from consumer.kafka_io.records import to_inbound
from consumer.record import InboundRecord

PartitionsCallback = Callable[[set[Partition]], None]
# The largest fetch response read: kafka-python's default (1,000,000 bytes) is below one
# record a topic may legally hold, and a bigger response closes the connection for ever.
MAX_FRAME_BYTES = 100 * 1024 * 1024


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
    ) -> None:
        """Subscribe to ``topic`` in ``group_id``.

        Args:
            connection: the settings, or ``security.connection_options(settings)``.
            topic: the request topic.
            group_id: the consumer group all replicas share.
            client_id: names this worker in broker logs.
            on_assigned: called (inside ``poll``) with newly assigned partitions.
            on_revoked: called (inside ``poll``) before partitions are taken away; the
                last chance to commit finished work for them.
        """
        self._consumer = open_consumer(
            connection,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,  # spec §3: commit only after the reply is acked
            auto_offset_reset="earliest",  # a new group must not skip requests already queued
            max_poll_interval_ms=600_000,
            session_timeout_ms=10_000,  # a crashed member is replaced within 10 s
            heartbeat_interval_ms=3_000,
            receive_message_max_bytes=MAX_FRAME_BYTES,
        )
        self._consumer.subscribe([topic], listener=_Listener(on_assigned, on_revoked))

    def poll(self, *, max_records: int, timeout: float) -> list[InboundRecord]:
        """Fetch up to ``max_records`` records; also runs heartbeats and rebalance callbacks."""
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        return [to_inbound(record) for records in batches.values() for record in records]

    def assignment(self) -> set[Partition]:
        """The partitions this member owns now."""
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause(self) -> None:
        """Stop fetching from every owned partition; the group membership stays alive."""
        self._consumer.pause(*self._consumer.assignment())

    def resume(self) -> None:
        """Fetch again from every paused partition."""
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)

    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit ``offsets`` (the next offset to read, per partition) synchronously."""
        if offsets:
            self._consumer.commit(
                {
                    TopicPartition(p.topic, p.partition): OffsetAndMetadata(offset, "", -1)
                    for p, offset in offsets.items()
                }
            )

    def lag(self) -> dict[Partition, int]:
        """Messages behind the end of each owned partition (for metrics)."""
        owned = list(self._consumer.assignment())
        ends = self._consumer.end_offsets(owned) if owned else {}
        result = {}
        for tp in owned:
            position = self._consumer.position(tp)
            result[Partition(tp.topic, tp.partition)] = max(0, ends.get(tp, position) - position)
        return result

    def close(self) -> None:
        """Leave the group (no autocommit: uncommitted work is re-read by the next owner)."""
        self._consumer.close(autocommit=False)
