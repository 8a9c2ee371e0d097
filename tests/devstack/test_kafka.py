"""The devstack Kafka broker is a real broker: groups, commits, partitions, restarts."""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tests.conftest import KafkaCluster, unique_name
from tests.waiting import wait_until


def _produce(kafka: KafkaCluster, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    try:
        for value in values:
            producer.send(topic, value).get(timeout=30)
    finally:
        producer.close()


def _consume_all(kafka: KafkaCluster, topic: str, group: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen: list[bytes] = []
    try:

        def got_all() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                seen.extend(record.value for record in records)
            return len(seen) >= count

        wait_until(got_all, timeout=60, what=f"{count} records from {topic}")
        consumer.commit()
    finally:
        consumer.close()
    return seen


def test_consumer_group_commit_is_stored_by_the_broker(
    kafka: KafkaCluster, new_topic: Callable[..., str]
) -> None:
    """A group consumes five records, commits, and the broker reports offset 5 for it."""
    topic = new_topic(partitions=1)
    group = unique_name("group")
    values = [f"value-{i}".encode() for i in range(5)]
    _produce(kafka, topic, values)

    assert _consume_all(kafka, topic, group, 5) == values

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    assert offsets[TopicPartition(topic, 0)].offset == 5


def test_topic_is_created_with_the_requested_partitions(
    kafka: KafkaCluster, new_topic: Callable[..., str]
) -> None:
    """A topic created with 3 partitions shows 3 partitions in a fresh client's metadata."""
    topic = new_topic(partitions=3)
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        partitions = wait_until(
            lambda: consumer.partitions_for_topic(topic), timeout=30, what="metadata"
        )
    finally:
        consumer.close()
    assert partitions == {0, 1, 2}


def test_restart_keeps_data_and_port(kafka: KafkaCluster, new_topic: Callable[..., str]) -> None:
    """Records written before a broker restart are read back after it, on the same address."""
    topic = new_topic(partitions=2)
    values = [f"before-restart-{i}".encode() for i in range(10)]
    _produce(kafka, topic, values)
    bootstrap = kafka.bootstrap_servers

    kafka.restart()

    assert kafka.bootstrap_servers == bootstrap
    read = _consume_all(kafka, topic, unique_name("group"), 10)
    assert sorted(read) == sorted(values)
