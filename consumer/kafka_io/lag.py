"""Consumer lag, measured off the loop thread: end offsets come from a client of its own.

Asking the broker for end offsets can wait for as long as a request timeout when the
broker stalls; the worker loop must never wait on it (spec §3: a fault never blocks a
partition). The loop hands over its positions (read from its own consumer's state, no
round trip); this thread asks for the end offsets and reports the difference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import structlog
from kafka import KafkaConsumer, TopicPartition

from consumer.kafka_io.clients import Connection, open_consumer
from consumer.kafka_io.offsets import Partition

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT_MS = 10_000  # an end-offset look-up gives up after this; the next one retries

OnLag = Callable[[dict[Partition, int]], None]
"""Receives, per owned partition, the messages between the position and the end."""


class LagMeter:
    """Measures lag on a daemon thread, at most one measurement at a time."""

    def __init__(self, connection: Connection, *, client_id: str, on_lag: OnLag) -> None:
        """Prepare the meter; its consumer connects at the first measurement.

        Args:
            connection: the settings, or ``security.connection_options(settings)``.
            client_id: names this client in broker logs.
            on_lag: called on the meter's thread with each measurement.
        """
        self._connection = connection
        self._client_id = client_id
        self._on_lag = on_lag
        self._wanted: dict[Partition, int] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-meter", daemon=True)
        self._thread.start()

    def measure(self, positions: Mapping[Partition, int]) -> None:
        """Ask for a measurement at ``positions`` (the next offset to fetch, per partition)."""
        with self._lock:
            self._wanted = dict(positions)
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (waiting at most ``timeout`` seconds) and its consumer."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        consumer: KafkaConsumer | None = None
        try:
            while self._wake.wait() and not self._closed.is_set():
                self._wake.clear()
                with self._lock:
                    positions, self._wanted = self._wanted or {}, None
                try:
                    if consumer is None:
                        consumer = open_consumer(
                            self._connection,
                            client_id=self._client_id,
                            enable_auto_commit=False,
                            request_timeout_ms=REQUEST_TIMEOUT_MS,
                        )
                    self._on_lag(_lag(consumer, positions))
                except Exception as exc:  # noqa: BLE001 -- the thread's boundary: the next measurement retries
                    log.debug("lag_measurement_failed", error=str(exc))
        finally:
            if consumer is not None:
                consumer.close()


def _lag(consumer: KafkaConsumer, positions: Mapping[Partition, int]) -> dict[Partition, int]:
    if not positions:
        return {}
    ends = consumer.end_offsets([TopicPartition(p.topic, p.partition) for p in positions])
    return {
        partition: max(0, ends.get(TopicPartition(*partition), position) - position)
        for partition, position in positions.items()
    }
