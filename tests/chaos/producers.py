"""Producers: the workload's batches written by real clients, in a thread of their own.

Plain batches go through kafka-python; compressed and transactional ones (aborted ones
included) through librdkafka (confluent-kafka), with Kafka's murmur2 partitioner so a key
lands on the same partition whichever client writes it. A write that fails while the
nemesis stops the broker is counted and skipped: the log read back afterwards, not this
module, says what was written.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer
from kafka import KafkaProducer
from kafka.errors import KafkaError

from tests.chaos.workload import ABORTED, COMPRESSED, PLAIN, Batch, Planned, Workload
from tests.waiting import wait_until

LOG = logging.getLogger("chaos.producers")
WRITE_TIMEOUT = 45.0  # seconds one batch may take, broker pauses included
TXN_TIMEOUT = 30.0


@dataclass
class Topics:
    """Where requests and route events go."""

    requests: str
    events: str


@dataclass
class Producers:
    """One client of each kind, writing batches to ``topics`` on ``bootstrap``."""

    bootstrap: str
    topics: Topics
    token: str
    written: Counter[str] = field(default_factory=Counter)  # batches written, by producer
    failed: Counter[str] = field(default_factory=Counter)  # batches whose write failed
    _plain: KafkaProducer | None = None
    _txn: Producer | None = None
    _compressed: dict[str, Producer] = field(default_factory=dict)

    def write(self, batch: Batch) -> None:
        """Write one batch and wait for the broker (bounded); a failure is counted, not raised."""
        try:
            if batch.producer == PLAIN:
                self._write_plain(batch)
            elif batch.producer == COMPRESSED:
                self._write_compressed(batch)
            else:
                self._write_transaction(batch, commit=batch.producer != ABORTED)
        except (KafkaError, KafkaException, OSError):
            self.failed[batch.producer] += 1
            if batch.producer not in (PLAIN, COMPRESSED):
                self._drop_transactional()
            return
        self.written[batch.producer] += 1

    def _topic(self, events: bool) -> str:
        return self.topics.events if events else self.topics.requests

    def _write_plain(self, batch: Batch) -> None:
        if self._plain is None:
            self._plain = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                linger_ms=5,
                max_in_flight_requests_per_connection=1,  # keeps each partition's order
                request_timeout_ms=15_000,
            )
        # kafka-python refuses a record with neither key nor value: librdkafka writes those
        tombstones = [r for r in batch.records if r.key is None and r.value is None]
        futures = [
            self._plain.send(self._topic(r.events), key=r.key, value=r.value, headers=r.headers)
            for r in batch.records
            if r.key is not None or r.value is not None
        ]
        for future in futures:
            future.get(timeout=WRITE_TIMEOUT)
        if tombstones:
            self._write_librdkafka(self._tombstones(), tombstones)

    def _librdkafka(self, **options: Any) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "partitioner": "murmur2_random",  # Java's and kafka-python's partitioner
                "linger.ms": 20,  # many records per batch: a codec applies per batch
                "message.timeout.ms": int(WRITE_TIMEOUT * 1000),
                "logger": LOG,  # librdkafka's connection errors while the broker is down
                **options,
            }
        )

    def _write_compressed(self, batch: Batch) -> None:
        codec = batch.codec or "gzip"
        producer = self._compressed.get(codec)
        if producer is None:
            producer = self._librdkafka(**{"compression.type": codec, "enable.idempotence": True})
            self._compressed[codec] = producer
        self._write_librdkafka(producer, batch.records)

    def _tombstones(self) -> Producer:
        producer = self._compressed.get("none")
        if producer is None:
            producer = self._librdkafka(**{"enable.idempotence": True})
            self._compressed["none"] = producer
        return producer

    def _write_librdkafka(self, producer: Producer, records: Iterable[Planned]) -> None:
        errors: list[str] = []
        for r in records:
            producer.produce(
                self._topic(r.events),
                key=r.key,
                value=r.value,
                headers=r.headers,
                on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
            )
        left = producer.flush(WRITE_TIMEOUT)
        if left or errors:
            raise KafkaException(f"{left} records undelivered, errors {errors[:3]}")

    def _write_transaction(self, batch: Batch, *, commit: bool) -> None:
        if self._txn is None:
            producer = self._librdkafka(**{"transactional.id": f"{self.token}-txn"})
            producer.init_transactions(TXN_TIMEOUT)
            self._txn = producer
        self._txn.begin_transaction()
        for r in batch.records:
            self._txn.produce(self._topic(r.events), key=r.key, value=r.value, headers=r.headers)
        self._txn.flush(WRITE_TIMEOUT)
        if commit:
            self._txn.commit_transaction(TXN_TIMEOUT)
        else:
            self._txn.abort_transaction(TXN_TIMEOUT)

    def _drop_transactional(self) -> None:
        """Forget a transactional producer after a failure; the next batch starts afresh."""
        producer, self._txn = self._txn, None
        if producer is not None:
            # fenced or timed out: the broker aborts the transaction anyway
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(5)
            producer.flush(1)

    def close(self) -> None:
        """Close the clients (bounded)."""
        if self._plain is not None:
            self._plain.close(timeout=10)
        self._drop_transactional()
        for producer in self._compressed.values():
            producer.flush(5)
        self._compressed.clear()


class Feeder(threading.Thread):
    """Writes the workload's batches, one every ``pace`` seconds on average, until stopped."""

    def __init__(self, workload: Workload, producers: Producers, pace: float) -> None:
        """Prepare the thread; ``start`` it, ``stop`` it."""
        super().__init__(name="chaos-feeder", daemon=True)
        self.workload = workload
        self.producers = producers
        self.pace = pace
        self.batches = 0
        self._halt = threading.Event()

    def run(self) -> None:
        """Write batches at the workload's pace until ``stop``."""
        rng = self.workload.spawn_rng("pace")
        for batch in self.workload.batches():
            if self._halt.is_set():
                break
            self.producers.write(batch)
            self.batches += 1
            due = time.monotonic() + rng.uniform(0.2, 2 * self.pace - 0.2)
            wait_until(
                lambda due=due: self._halt.is_set() or time.monotonic() >= due,
                timeout=2 * self.pace + 1,
                interval=0.05,
                what="the next batch's time",
            )
        self.producers.close()

    def stop(self, timeout: float = WRITE_TIMEOUT * 3) -> None:
        """Stop after the batch being written, and wait for the thread (bounded)."""
        self._halt.set()
        self.join(timeout=timeout)
