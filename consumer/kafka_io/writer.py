"""Replay's writer: an ``acks=all`` producer whose sends are confirmed together at the end.

Unlike the worker's ``RecordSink``, which settles each publish on its own, replay queues
every record first and then waits for all of the broker's acks, so that its summary only
counts what the broker confirmed.
"""

from __future__ import annotations

from typing import Any

from kafka.errors import KafkaError

from consumer.errors import ReplayWriteError
from consumer.kafka_io.clients import Connection, open_acked_producer
from consumer.record import OutboundRecord

DEFAULT_ACK_TIMEOUT = 60.0


class RecordWriter:
    """An ``acks=all`` idempotent producer that remembers what it still has to confirm."""

    def __init__(self, connection: Connection) -> None:
        """Connect the producer.

        Args:
            connection: the settings, or ``security.connection_options(settings)``.
        """
        self._producer = open_acked_producer(connection)
        self._futures: list[Any] = []

    def send(self, record: OutboundRecord) -> None:
        """Queue one record; ``confirm`` waits for its ack.

        Args:
            record: the record to publish.
        """
        future = self._producer.send(
            record.topic, key=record.key, value=record.value, headers=list(record.headers)
        )
        self._futures.append(future)

    def confirm(self, timeout: float = DEFAULT_ACK_TIMEOUT) -> int:
        """Wait until the broker acknowledged every queued record.

        Args:
            timeout: seconds to wait for each ack.

        Returns:
            How many records were acknowledged.

        Raises:
            ReplayWriteError: when a record was not acknowledged, with how many were.
        """
        acked = 0
        futures, self._futures = self._futures, []
        self._producer.flush(timeout=timeout)
        for future in futures:
            try:
                future.get(timeout=timeout)
            except KafkaError as exc:
                raise ReplayWriteError(
                    f"broker did not acknowledge a record ({type(exc).__name__}); "
                    f"{acked} of {len(futures)} acknowledged before it"
                ) from exc
            acked += 1
        return acked

    def close(self, timeout: float = 10.0) -> None:
        """Flush and close the producer.

        Args:
            timeout: seconds to wait for outstanding sends.
        """
        self._producer.close(timeout=timeout)
