"""Doctor's Kafka checks: brokers reachable, the three topics, the consumer group's lag.

The admin client and the end-offset consumer come from ``kafka_io.clients``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import KafkaError

from consumer.diagnostics.result import CLIENT_ID, CheckResult, not_checked
from consumer.errors import KafkaSecurityError, KafkaUnreachableError, describe_error
from consumer.kafka_io.clients import open_admin, open_consumer
from consumer.kafka_io.preflight import check_connection
from consumer.settings import Settings, env_name

T = TypeVar("T")
RETRY_PAUSE = 0.1  # seconds between attempts of a call that failed transiently
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
        The Kafka results; topics and group are "not checked" when Kafka is unreachable
        or refuses the credentials or certificate.
    """
    dependents = [name for name, _ in TOPIC_SETTINGS] + ["consumer group"]
    # the preflight names a refused password or certificate; the admin client would not
    try:
        check_connection(settings, timeout=timeout)
    except KafkaSecurityError as exc:
        return [
            CheckResult("kafka", False, exc.problem, exc.remedy),
            *not_checked(dependents, "kafka"),
        ]
    except KafkaUnreachableError as exc:
        return [kafka_unreachable(settings, exc), *not_checked(dependents, "kafka")]
    ms = int(timeout * 1000)
    try:
        admin = open_admin(
            settings,
            client_id=CLIENT_ID,
            request_timeout_ms=ms,
            api_version_auto_timeout_ms=ms,
        )
    except (KafkaError, OSError) as exc:
        return [kafka_unreachable(settings, exc), *not_checked(dependents, "kafka")]
    try:
        try:
            topics = set(retrying(admin.list_topics, timeout))
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
            *(
                check_topic(admin, topics, name, field, settings, timeout=timeout)
                for name, field in TOPIC_SETTINGS
            ),
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
    # the preflight's own message already lists each server and why it failed
    reason = str(exc) if isinstance(exc, KafkaUnreachableError) else describe_error(exc)
    return CheckResult(
        "kafka",
        False,
        f"cannot reach {settings.kafka_bootstrap_servers} "
        f"({settings.kafka_security_protocol}): {reason}",
        f"check {', '.join(names)} and that the brokers are up",
    )


def check_topic(
    admin: KafkaAdminClient,
    existing: set[str],
    name: str,
    field: str,
    settings: Settings,
    *,
    timeout: float,
) -> CheckResult:
    """One configured topic exists; its partition count goes in the detail.

    Args:
        admin: a connected admin client.
        existing: the topics the cluster lists.
        name: the check's name, like ``request topic``.
        field: the setting holding the topic, like ``request_topic``.
        settings: the settings to check.
        timeout: seconds the call may be retried.

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
        described = retrying(lambda: admin.describe_topics([topic])[0], timeout)
    except KafkaError as exc:
        return CheckResult(
            name,
            False,
            f"topic {topic} exists but cannot be described: {describe_error(exc)}",
            f"grant the Kafka user DESCRIBE on topic {topic}",
        )
    partitions = len(described.get("partitions") or ())
    return CheckResult(name, True, f"{topic} exists with {partitions} partition(s)")


def retrying(call: Callable[[], T], timeout: float) -> T:
    """``call()``, repeated while it fails with a retriable Kafka error, for ``timeout`` s.

    Two transient failures are not the operator's problem: a fresh cluster answers
    CoordinatorNotAvailable while it creates its offsets topic on the first group lookup,
    and kafka-python drops a new TLS 1.3 connection whose broker sends its session ticket
    before any request is in flight ("Socket EVENT_READ without in-flight-requests").

    Args:
        call: one admin-client call.
        timeout: seconds to keep trying.

    Returns:
        What ``call`` returned.

    Raises:
        KafkaError: a non-retriable error at once, a retriable one after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() >= deadline:
                raise
        time.sleep(RETRY_PAUSE)


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
        info = retrying(lambda: admin.describe_consumer_groups([group])[0], timeout)
        offsets = retrying(lambda: admin.list_consumer_group_offsets(group), timeout)
        committed = {
            tp: meta.offset
            for tp, meta in offsets.items()
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
    consumer = open_consumer(
        settings,
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
