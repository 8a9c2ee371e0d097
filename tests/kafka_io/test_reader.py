"""Group-less readers against the real broker: replay's bounded read and send's tail."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaConsumer

from consumer.errors import ReplayError
from consumer.kafka_io.reader import TailReader, open_reader, plan_ranges, read_records
from consumer.kafka_io.writer import RecordWriter
from consumer.record import InboundRecord, OutboundRecord
from consumer.replay import OffsetRange, Window
from tests.conftest import KafkaCluster
from tests.waiting import wait_until


def _connection(kafka: KafkaCluster) -> dict[str, object]:
    return {"bootstrap_servers": kafka.bootstrap_servers}


def _write(kafka: KafkaCluster, topic: str, values: list[bytes], partition_key: bytes) -> None:
    writer = RecordWriter(_connection(kafka))
    try:
        for value in values:
            writer.send(OutboundRecord(topic=topic, key=partition_key, value=value))
        assert writer.confirm() == len(values)
    finally:
        writer.close()


@pytest.fixture
def reader(kafka: KafkaCluster) -> Iterator[KafkaConsumer]:
    """A replay reader on the test broker."""
    made = open_reader(_connection(kafka))
    try:
        yield made
    finally:
        made.close()


def test_read_records_stops_at_the_range_and_detaches_the_records(
    kafka: KafkaCluster, new_topic: Callable[..., str], reader: KafkaConsumer
) -> None:
    """An offset window reads exactly its records, as InboundRecords, then stops."""
    topic = new_topic()
    _write(kafka, topic, [b"v0", b"v1", b"v2", b"v3"], b"k")

    ranges = plan_ranges(reader, topic, partition=None, window=Window(from_offset=1, to_offset=3))
    records = list(read_records(reader, topic, ranges))

    assert ranges == {0: OffsetRange(1, 3)}
    assert [(r.offset, r.value) for r in records] == [(1, b"v1"), (2, b"v2")]
    assert all(isinstance(r, InboundRecord) and r.topic == topic for r in records)


def test_plan_ranges_refuses_a_missing_topic_or_partition(
    new_topic: Callable[..., str], reader: KafkaConsumer
) -> None:
    """A topic that does not exist, or a partition it lacks, is a ReplayError."""
    topic = new_topic()

    with pytest.raises(ReplayError, match="does not exist"):
        plan_ranges(reader, f"{topic}-missing", partition=None, window=Window())
    with pytest.raises(ReplayError, match="has no partition 5"):
        plan_ranges(reader, topic, partition=5, window=Window())


def test_tail_reader_sees_only_what_arrives_after_it_opened(
    kafka: KafkaCluster, new_topic: Callable[..., str]
) -> None:
    """Records already on the topic are skipped; the next one is read with its headers."""
    topic = new_topic(partitions=2)
    _write(kafka, topic, [b"old"], b"a")
    tail = TailReader(_connection(kafka), topic)
    try:
        writer = RecordWriter(_connection(kafka))
        try:
            writer.send(OutboundRecord(topic=topic, key=b"b", value=b"new", headers=(("h", b"1"),)))
            writer.confirm()
        finally:
            writer.close()
        seen: list[InboundRecord] = []

        def arrived() -> bool:
            seen.extend(tail.poll(timeout=0.5))
            return bool(seen)

        wait_until(arrived, timeout=30, what="the new record")
    finally:
        tail.close()

    assert [(r.value, r.header("h")) for r in seen] == [(b"new", b"1")]
