"""Publish replies and dead-letter records, and wait for the broker's ack (spec §3 Delivery)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

from consumer.errors import TriggerConsumerError
from consumer.record import OutboundRecord

DEFAULT_ACK_TIMEOUT = 60.0
# The client-side bound on one record: far above any topic's max.message.bytes, so the
# broker decides what is too large (it says so per topic, and a DLQ copy is then shrunk).
MAX_REQUEST_SIZE = 64 * 1024 * 1024


class SinkError(TriggerConsumerError):
    """Raised when the broker did not acknowledge every record of a publish in time.

    The request's offset is then not committed; the caller sends the unacked ones again.

    Attributes:
        unacked: positions (in the published sequence) of the records not acknowledged.
        too_large: those of them the broker refused as over the topic's size limit
            (sending them again unchanged can never succeed).
    """

    def __init__(self, message: str, *, unacked: list[int], too_large: list[int]) -> None:
        """Name what failed; ``message`` says why, without any record content."""
        super().__init__(message)
        self.unacked = tuple(unacked)
        self.too_large = frozenset(too_large)


class RecordSink:
    """One idempotent ``acks=all`` producer shared by all worker threads (it is thread-safe)."""

    def __init__(self, connection: dict[str, Any], *, client_id: str) -> None:
        """Connect the producer.

        Args:
            connection: ``security.connection_options(settings)``.
            client_id: names this worker in broker logs.
        """
        self._producer = KafkaProducer(
            **connection,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,  # broker-side dedup of the producer's own retries
            linger_ms=5,
            max_request_size=MAX_REQUEST_SIZE,
        )

    def publish(
        self, records: Sequence[OutboundRecord], *, timeout: float = DEFAULT_ACK_TIMEOUT
    ) -> None:
        """Send ``records`` and return once the broker acknowledged every one of them.

        Raises:
            SinkError: when any record was not acknowledged within ``timeout`` seconds;
                it names the unacknowledged records and those refused as too large.
        """
        deadline = time.monotonic() + timeout
        futures = [
            self._producer.send(
                record.topic, key=record.key, value=record.value, headers=list(record.headers)
            )
            for record in records
        ]
        unacked: list[int] = []
        too_large: list[int] = []
        errors: set[str] = set()
        for position, future in enumerate(futures):
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:
                unacked.append(position)
                errors.add(type(exc).__name__)
                if isinstance(exc, MessageSizeTooLargeError):
                    too_large.append(position)
        if unacked:
            raise SinkError(
                f"broker did not acknowledge {len(unacked)} of {len(futures)} records: "
                + ", ".join(sorted(errors)),
                unacked=unacked,
                too_large=too_large,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=timeout)
