"""Group-less readers: replay's bounded read of past records, and send's tail of a reply topic.

Neither joins a consumer group or commits anything. The replay reader assigns and seeks
each partition and stops at the end offsets captured when the read was planned; the tail
reader sees only what arrives after it opened. Both yield ``InboundRecord`` values.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition

from consumer.errors import ReplayError, ReplayStalledError
from consumer.kafka_io.clients import Connection, open_consumer
from consumer.kafka_io.records import to_inbound
from consumer.record import InboundRecord
from consumer.replay import OffsetRange, Window, offset_range

# how long the reader waits without any progress before it gives up on a partition
DEFAULT_IDLE_TIMEOUT = 30.0
POLL_TIMEOUT_MS = 500


def open_reader(connection: Connection, *, read_committed: bool = False) -> KafkaConsumer:
    """A group-less consumer that commits nothing and never creates topics.

    Args:
        connection: the settings, or ``security.connection_options(settings)``.
        read_committed: read as the worker does (``read_committed``: no aborted
            transaction's records, end offsets at the last stable offset); replay copies
            every record, so it reads uncommitted ones too.

    Returns:
        The consumer; the caller closes it.
    """
    return open_consumer(
        connection,
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        # offsets deleted by retention since the plan: continue at the oldest one left
        auto_offset_reset="earliest",
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )


def plan_ranges(
    consumer: KafkaConsumer, topic: str, *, partition: int | None, window: Window
) -> dict[int, OffsetRange]:
    """Capture, now, the offsets each partition of ``topic`` is read between.

    Args:
        consumer: a reader from ``open_reader``.
        topic: the source topic.
        partition: read only this partition; None: all of them.
        window: the offset or time range.

    Returns:
        partition → range, for every selected partition (ranges may be empty).

    Raises:
        ReplayError: when the topic or the partition does not exist.
    """
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ReplayError(f"topic {topic!r} does not exist")
    if partition is not None:
        if partition not in partitions:
            raise ReplayError(f"topic {topic!r} has no partition {partition}")
        partitions = {partition}
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    beginnings = consumer.beginning_offsets(tps)
    ends = consumer.end_offsets(tps)
    since = _offsets_at(consumer, tps, window.since_ms)
    until = _offsets_at(consumer, tps, window.until_ms)
    return {
        tp.partition: offset_range(
            beginning=beginnings[tp],
            end=ends[tp],
            window=window,
            since_offset=since.get(tp),
            until_offset=until.get(tp),
        )
        for tp in tps
    }


def _offsets_at(
    consumer: KafkaConsumer, tps: list[TopicPartition], timestamp_ms: int | None
) -> dict[TopicPartition, int | None]:
    if timestamp_ms is None:
        return {}
    found = consumer.offsets_for_times({tp: max(0, timestamp_ms) for tp in tps})
    return {tp: None if hit is None else hit.offset for tp, hit in found.items()}


def read_records(
    consumer: KafkaConsumer,
    topic: str,
    ranges: dict[int, OffsetRange],
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
) -> Iterator[InboundRecord]:
    """Yield every record in ``ranges``, partition by partition in offset order, then stop.

    Never waits for new records: each partition is done once its position reaches the
    range's stop, which is at most the end offset captured by ``plan_ranges``.

    Args:
        consumer: a reader from ``open_reader``.
        topic: the source topic.
        ranges: partition → range, from ``plan_ranges``.
        idle_timeout: seconds without progress after which reading fails.

    Yields:
        The records, detached from the client.

    Raises:
        ReplayStalledError: when no partition advanced for ``idle_timeout`` seconds.
    """
    pending = {TopicPartition(topic, p): r for p, r in sorted(ranges.items()) if not r.empty}
    consumer.assign(list(pending))
    for tp, offsets in pending.items():
        consumer.seek(tp, offsets.start)
    last_progress = time.monotonic()
    while pending:
        batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        for tp, records in batches.items():
            wanted = pending.get(tp)
            for record in records:
                if wanted is None or record.offset >= wanted.stop:
                    break
                yield to_inbound(record)
        for tp in list(pending):
            # compacted or transactional logs skip offsets: the position, not the last
            # record, tells when a partition is done
            if consumer.position(tp) >= pending[tp].stop:
                del pending[tp]
                consumer.pause(tp)
        if batches:
            last_progress = time.monotonic()
        elif pending and time.monotonic() - last_progress > idle_timeout:
            stuck = ", ".join(f"{tp.partition}@{consumer.position(tp)}" for tp in pending)
            raise ReplayStalledError(f"no progress for {idle_timeout:g} s on {topic} ({stuck})")


def topic_exists(consumer: KafkaConsumer, topic: str) -> bool:
    """Tell whether ``topic`` exists (the reader never creates it).

    Args:
        consumer: a reader from ``open_reader``.
        topic: the topic name.

    Returns:
        True when the broker knows the topic.
    """
    return bool(consumer.partitions_for_topic(topic))


class TailReader:
    """A group-less consumer of every partition of one topic, from its end when opened."""

    def __init__(self, connection: Connection, topic: str) -> None:
        """Assign every partition of ``topic`` and resolve its end offset now.

        Resolving the positions before anything is produced means a record that arrives
        right after (a reply to a request sent next) is never skipped.

        Args:
            connection: the settings, or ``security.connection_options(settings)``.
            topic: the topic to tail; a topic without metadata is read at partition 0.
        """
        self._consumer = open_consumer(connection, enable_auto_commit=False)
        partitions = self._consumer.partitions_for_topic(topic) or {0}
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        self._consumer.assign(assigned)
        self._consumer.seek_to_end(*assigned)
        for tp in assigned:
            self._consumer.position(tp)  # resolve the end offset now, not after it moved

    def poll(self, timeout: float) -> list[InboundRecord]:
        """Fetch what arrived since the last poll, waiting at most ``timeout`` seconds.

        Args:
            timeout: seconds to wait when nothing is there yet.

        Returns:
            The records, detached from the client, per partition in offset order.
        """
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000))
        return [to_inbound(record) for records in batches.values() for record in records]

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
