"""Build kafka-python clients: every KafkaConsumer, KafkaProducer and KafkaAdminClient starts here.

Each builder starts from ``security.connection_options`` (servers, protocol, TLS, SASL)
and adds the caller's own options; the callers say what kind of client they need.
Given the ``Settings``, a builder derives the connection options itself; given options
already derived, it reuses them (one TLS context for a reader and a writer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import NoBrokersAvailable

from consumer.kafka_io.security import connection_options
from consumer.settings import Settings

Connection: TypeAlias = Settings | Mapping[str, Any]
"""The settings, or ``security.connection_options(settings)`` derived from them."""


log = structlog.get_logger(__name__)

# kafka-python's own metrics (sensors updated per record and per request) are read by
# nothing here, and cost a few percent of the worker's CPU per message
UNMEASURED: dict[str, Any] = {"metrics_enabled": False}

# kafka-python asks a broker its version with ApiVersions; left unanswered (a paused broker)
# it falls back to probes of 0.x requests and takes a broker that answers one of those for
# Kafka 0.9 (nemesis seed 1313): an idempotent producer then refuses to start, a consumer
# would speak a 2015 protocol (no read_committed). Such a client is made again.
OLDEST_BROKER = (0, 11)
VERSION_ATTEMPTS = 5
VERSION_RETRY_DELAY = 1.0  # seconds
Client = TypeVar("Client", KafkaConsumer, KafkaProducer)


def resolve_connection(connection: Connection) -> dict[str, Any]:
    """The connection keyword arguments for ``connection``.

    Args:
        connection: the settings, or connection options already derived from them.

    Returns:
        A fresh dict of ``security.connection_options``.

    Raises:
        OSError: the CA file of an SSL protocol cannot be read (settings only).
    """
    if isinstance(connection, Settings):
        return connection_options(connection)
    return dict(connection)


def open_consumer(connection: Connection, **options: Any) -> KafkaConsumer:
    """A ``KafkaConsumer`` over ``connection``.

    Args:
        connection: the settings or their connection options.
        **options: further ``KafkaConsumer`` options (group, commits, timeouts).

    Returns:
        The consumer; the caller closes it.

    Raises:
        OSError: the CA file cannot be read.
    """
    config = {**resolve_connection(connection), **UNMEASURED, **options}
    return _with_modern_version(lambda: KafkaConsumer(**config))


def open_producer(connection: Connection, **options: Any) -> KafkaProducer:
    """A ``KafkaProducer`` over ``connection``.

    Args:
        connection: the settings or their connection options.
        **options: further ``KafkaProducer`` options (acks, sizes, client id).

    Returns:
        The producer; the caller closes it.

    Raises:
        OSError: the CA file cannot be read.
    """
    config = {**resolve_connection(connection), **UNMEASURED, **options}
    return _with_modern_version(lambda: KafkaProducer(**config))


def _with_modern_version(make: Callable[[], Client]) -> Client:
    """Make a client, again while kafka-python took the broker for one older than 0.11.

    Raises:
        NoBrokersAvailable: no broker answered, or its version was misread every time.
    """
    for attempt in range(1, VERSION_ATTEMPTS + 1):
        try:
            client = make()
        except AssertionError as exc:  # the idempotent producer's own check of that version
            if "0.11" not in str(exc):
                raise
        else:
            if client.config["api_version"] >= OLDEST_BROKER:
                return client
            client.close()
        log.warning("kafka_version_misread", attempt=attempt, retry_in=VERSION_RETRY_DELAY)
        time.sleep(VERSION_RETRY_DELAY)
    raise NoBrokersAvailable("the brokers' version read as older than 0.11 every time")


def open_acked_producer(connection: Connection, **options: Any) -> KafkaProducer:
    """An idempotent ``acks=all`` producer that sends at once: the worker's and replay's.

    Args:
        connection: the settings or their connection options.
        **options: further ``KafkaProducer`` options (client id, request size).

    Returns:
        The producer; the caller closes it.

    Raises:
        OSError: the CA file cannot be read.
    """
    return open_producer(
        connection,
        acks="all",
        enable_idempotence=True,  # broker-side dedup of the producer's own retries
        # no linger: at tens of replies a second each reply is its own batch anyway, and a
        # linger costs the sender thread a second wake-up per batch (0.6 ms CPU per reply
        # at 55/s); under a burst, records still batch while a request is in flight
        linger_ms=0,
        **options,
    )


def open_admin(connection: Connection, **options: Any) -> KafkaAdminClient:
    """A ``KafkaAdminClient`` over ``connection``.

    Args:
        connection: the settings or their connection options.
        **options: further ``KafkaAdminClient`` options (client id, timeouts).

    Returns:
        The admin client; the caller closes it.

    Raises:
        OSError: the CA file cannot be read.
        KafkaError: no broker answered the version probe in time.
    """
    return KafkaAdminClient(**resolve_connection(connection), **options)
