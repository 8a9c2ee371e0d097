"""Publish replies and dead-letter records, and wait for the broker's ack (spec §3 Delivery)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from consumer.errors import TriggerConsumerError
from consumer.record import OutboundRecord

DEFAULT_ACK_TIMEOUT = 60.0


class SinkError(TriggerConsumerError):
    """Raised when the broker did not acknowledge a reply or dead-letter record in time.

    The request's offset is then not committed; it is processed again after a restart.
    """


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
            max_request_size=8 * 1024 * 1024,
        )

    def publish(
        self, records: Sequence[OutboundRecord], *, timeout: float = DEFAULT_ACK_TIMEOUT
    ) -> None:
        """Send ``records`` and return once the broker acknowledged every one of them.

        Raises:
            SinkError: when any record was not acknowledged within ``timeout`` seconds.
        """
        futures = [
            self._producer.send(
                record.topic,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
            )
            for record in records
        ]
        try:
            for future in futures:
                future.get(timeout=timeout)
        except KafkaError as exc:
            raise SinkError(f"broker did not acknowledge: {type(exc).__name__}") from exc

    def close(self, timeout: float = 10.0) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=timeout)
