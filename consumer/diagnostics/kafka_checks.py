"""Doctor's Kafka checks: brokers reachable, the three topics, the consumer group's lag."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import CoordinatorNotAvailableError, KafkaError

from consumer.diagnostics.result import (
    CLIENT_ID,
    CheckResult,
    describe_error,
    env_name,
    not_checked,
)
from consumer.kafka_io.security import connection_options
from consumer.settings import Settings

TOPIC_SETTINGS = (
    ("request topic", "request_topic"),
    ("reply topic", "reply_topic"),
    ("DLQ topic", "dlq_topic"),
)


def kafka_checks(settings: Settings, timeout: float) -> list[CheckResult]:
    """Kafka reachable, the three topics, and the consumer group.

    Args:
        settings: the settings to check.
        timeout: seconds each Kafka call may take.

    Returns:
        The Kafka results; topics and group are "not checked" when Kafka is unreachable.
    """
    dependents = [name for name, _ in TOPIC_SETTINGS] + ["consumer group"]
    ms = int(timeout * 1000)
    try:
        admin = KafkaAdminClient(
            **connection_options(settings),
            client_id=CLIENT_ID,
            request_timeout_ms=ms,
            api_version_auto_timeout_ms=ms,
        )
    except (KafkaError, OSError) as exc:
        return [kafka_unreachable(settings, exc), *not_checked(dependents, "kafka")]
    try:
        try:
            topics = set(admin.list_topics())
        except KafkaError as exc:
            return [kafka_unreachable(settings, exc), *not_checked(dependents, "kafka")]
        reached = CheckResult(
            "kafka",
            True,
            f"connected to {settings.kafka_bootstrap_servers} "
            f"({settings.kafka_security_protocol}), {len(topics)} topics visible",
        )
        return [
            reached,
            *(check_topic(admin, topics, name, field, settings) for name, field in TOPIC_SETTINGS),
            check_consumer_group(admin, settings, timeout),
        ]
    finally:
        admin.close()


def kafka_unreachable(settings: Settings, exc: BaseException) -> CheckResult:
    """The failed ``kafka`` check, with a remedy naming the connection settings in use.

    Args:
        settings: the settings used to connect.
        exc: why the connection failed.

    Returns:
        The failed result.
    """
    names = [env_name("kafka_bootstrap_servers"), env_name("kafka_security_protocol")]
    if settings.kafka_security_protocol.startswith("SASL"):
        names += [env_name(f"kafka_sasl_{part}") for part in ("mechanism", "username", "password")]
    if settings.kafka_security_protocol.endswith("SSL"):
        names.append(env_name("kafka_ssl_cafile"))
    return CheckResult(
        "kafka",
        False,
        f"cannot reach {settings.kafka_bootstrap_servers} "
        f"({settings.kafka_security_protocol}): {describe_error(exc)}",
        f"check {', '.join(names)} and that the brokers are up",
    )


def check_topic(
    admin: KafkaAdminClient, existing: set[str], name: str, field: str, settings: Settings
) -> CheckResult:
    """One configured topic exists; its partition count goes in the detail.

    Args:
        admin: a connected admin client.
        existing: the topics the cluster lists.
        name: the check's name, like ``request topic``.
        field: the setting holding the topic, like ``request_topic``.
        settings: the settings to check.

    Returns:
        The result; a missing topic fails, naming the topic and its setting.
    """
    topic: str = getattr(settings, field)
    if topic not in existing:
        return CheckResult(
            name,
            False,
            f"topic {topic} does not exist",
            f"create topic {topic}, or set {env_name(field)} to an existing topic",
        )
    try:
        described = admin.describe_topics([topic])[0]
    except KafkaError as exc:
        return CheckResult(
            name,
            False,
            f"topic {topic} exists but cannot be described: {describe_error(exc)}",
            f"grant the Kafka user DESCRIBE on topic {topic}",
        )
    partitions = len(described.get("partitions") or ())
    return CheckResult(name, True, f"{topic} exists with {partitions} partition(s)")


def _describe_group(admin: KafkaAdminClient, group: str, timeout: float) -> Any:
    """Describe ``group``, waiting out a coordinator that is still being elected.

    A fresh cluster creates its offsets topic on the first group lookup and answers
    CoordinatorNotAvailable meanwhile: that is not the operator's problem.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.describe_consumer_groups([group])[0]
        except CoordinatorNotAvailableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def check_consumer_group(
    admin: KafkaAdminClient, settings: Settings, timeout: float
) -> CheckResult:
    """The consumer group's state and its lag on the request topic (information only).

    Args:
        admin: a connected admin client.
        settings: the settings to check.
        timeout: seconds each Kafka call may take.

    Returns:
        The result; a group without committed offsets passes.
    """
    group, topic = settings.kafka_group_id, settings.request_topic
    try:
        info = _describe_group(admin, group, timeout)
        committed = {
            tp: meta.offset
            for tp, meta in admin.list_consumer_group_offsets(group).items()
            if tp.topic == topic and meta.offset >= 0
        }
        ends = _end_offsets(settings, list(committed), timeout) if committed else {}
    except KafkaError as exc:
        return CheckResult(
            "consumer group",
            False,
            f"cannot read group {group}: {describe_error(exc)}",
            f"grant the Kafka user DESCRIBE on group {group} ({env_name('kafka_group_id')})",
        )
    state = f"group {group} is {info.state} with {len(info.members)} member(s)"
    if not committed:
        return CheckResult("consumer group", True, f"{state}; no committed offsets yet on {topic}")
    lag = sum(max(ends.get(tp, offset) - offset, 0) for tp, offset in committed.items())
    return CheckResult(
        "consumer group",
        True,
        f"{state}; lag {lag} on {topic} over {len(committed)} committed partition(s)",
    )


def _end_offsets(
    settings: Settings, partitions: list[TopicPartition], timeout: float
) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(
        **connection_options(settings),
        client_id=CLIENT_ID,
        enable_auto_commit=False,
        request_timeout_ms=max(int(timeout * 1000), 1000),
        api_version_auto_timeout_ms=int(timeout * 1000),
    )
    try:
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        return ends
    finally:
        consumer.close()
