"""Build kafka-python clients: every KafkaConsumer, KafkaProducer and KafkaAdminClient starts here.

Each builder starts from ``security.connection_options`` (servers, protocol, TLS, SASL)
and adds the caller's own options; the callers say what kind of client they need.
Given the ``Settings``, a builder derives the connection options itself; given options
already derived, it reuses them (one TLS context for a reader and a writer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from consumer.kafka_io.security import connection_options
from consumer.settings import Settings

Connection: TypeAlias = Settings | Mapping[str, Any]
"""The settings, or ``security.connection_options(settings)`` derived from them."""


# kafka-python's own metrics (sensors updated per record and per request) are read by
# nothing here, and cost a few percent of the worker's CPU per message
UNMEASURED: dict[str, Any] = {"metrics_enabled": False}


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
    return KafkaConsumer(**{**resolve_connection(connection), **UNMEASURED, **options})


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
    return KafkaProducer(**{**resolve_connection(connection), **UNMEASURED, **options})


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
