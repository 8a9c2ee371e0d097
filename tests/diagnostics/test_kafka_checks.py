"""The Kafka checks against the real broker."""

from __future__ import annotations

import socket
from collections.abc import Callable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumer.diagnostics.kafka_checks import check_consumer_group, kafka_checks
from consumer.settings import load_settings
from tests.conftest import KafkaCluster, unique_name

TIMEOUT = 3.0


def test_topics_report_their_partitions_and_a_missing_one_fails(
    kafka: KafkaCluster, new_topic: Callable[..., str]
) -> None:
    """Existing topics pass with their partition counts; a missing one fails, naming its setting."""
    missing = unique_name("doctor-missing")
    settings = load_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_group_id=unique_name("doctor-group"),
        request_topic=new_topic(partitions=3, prefix="doctor-requests"),
        reply_topic=new_topic(prefix="doctor-replies"),
        dlq_topic=missing,
    )
    results = {result.name: result for result in kafka_checks(settings, TIMEOUT)}
    assert results["kafka"].ok
    assert results["request topic"].detail == f"{settings.request_topic} exists with 3 partition(s)"
    assert results["reply topic"].ok
    assert not results["DLQ topic"].ok
    assert results["DLQ topic"].detail == f"topic {missing} does not exist"
    assert results["DLQ topic"].remedy == (
        f"create topic {missing}, or set TRIGGER_CONSUMER_DLQ_TOPIC to an existing topic"
    )
    assert results["consumer group"].ok
    assert "no committed offsets yet" in results["consumer group"].detail


def test_an_unreachable_broker_fails_and_skips_the_topics() -> None:
    """A closed port fails the kafka check with the refused server; topics and group are not run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")
    results = kafka_checks(settings, TIMEOUT)
    assert [(result.name, result.ok) for result in results] == [
        ("kafka", False),
        ("request topic", False),
        ("reply topic", False),
        ("DLQ topic", False),
        ("consumer group", False),
    ]
    assert results[0].detail.startswith(
        f"cannot reach 127.0.0.1:{port} (PLAINTEXT): no Kafka broker accepted a connection: "
        f"127.0.0.1:{port} (KafkaConnectionError: "
    )
    assert "ECONNREFUSED" in results[0].detail
    assert results[0].remedy is not None
    assert "TRIGGER_CONSUMER_KAFKA_BOOTSTRAP_SERVERS" in results[0].remedy
    assert results[1].detail == "not checked: kafka failed"


def test_consumer_group_lag_counts_from_committed_offsets(
    kafka: KafkaCluster, new_topic: Callable[..., str]
) -> None:
    """Five records with offset 2 committed show a lag of 3."""
    topic, group = new_topic(prefix="doctor-lag"), unique_name("doctor-lag")
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        for number in range(5):
            producer.send(topic, value=str(number).encode()).get(timeout=30)
    finally:
        producer.close()
    committer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})
    finally:
        committer.close()
    settings = load_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers, kafka_group_id=group, request_topic=topic
    )
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        result = check_consumer_group(admin, settings, TIMEOUT)
    finally:
        admin.close()
    assert result.ok, result
    assert result.detail.endswith(f"lag 3 on {topic} over 1 committed partition(s)")
