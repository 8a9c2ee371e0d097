"""Publish replies and dead-letter records; learn when the broker acked them (spec §3 Delivery)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, repeat
from typing import Any

import structlog
from kafka.errors import (
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NoBrokersAvailable,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from consumer.errors import SinkError
from consumer.kafka_io.clients import Connection, open_acked_producer
from consumer.record import OutboundRecord

# The producer fails a record it could not deliver within DELIVERY_TIMEOUT_MS; a publish
# waits a little longer, so that a publish that gave up left no record behind that the
# producer could still deliver later (a tracked run's `completed` sent twice otherwise)
DELIVERY_TIMEOUT_MS = 60_000
DEFAULT_ACK_TIMEOUT = DELIVERY_TIMEOUT_MS / 1000 + 5.0
# The client-side bound on one record: far above any topic's max.message.bytes, so the
# broker decides what is too large (it says so per topic, and a DLQ copy is then shrunk).
MAX_REQUEST_SIZE = 64 * 1024 * 1024
# How long ``send`` may block for a topic's metadata (or buffer room). A missing topic with
# auto-creation off never gets metadata, and kafka-python's default (60 s) would block the
# answering thread, the loop's included, a minute per attempt: five attempts before a
# refused reply topic falls back to the default one (answering.py) held its partition 5 min.
MAX_BLOCK_MS = 5_000
_ACKED = "acked"  # a record's state once the broker acknowledged it
# the waits between attempts to reach a broker at start-up: doubling to 30 s, then forever
START_DELAYS: Iterable[float] = (1.0, 2.0, 4.0, 8.0, 16.0)
START_DELAY_MAX = 30.0

log = structlog.get_logger(__name__)


def _start_delays() -> Iterator[float]:
    return chain(START_DELAYS, repeat(START_DELAY_MAX))


OnSettled = Callable[[SinkError | None], None]
"""Called once every record of a delivery is settled: None when all were acknowledged."""


AnsweredSince = Callable[[float], bool]
"""Whether the broker answered a metadata request at or after a monotonic time."""


def _never(_since: float) -> bool:
    return False


class Delivery:
    """The broker's answers for the records of one ``RecordSink.send``.

    kafka-python settles each record on its I/O thread, so ``on_settled`` callbacks run
    there: they must be quick and must never wait for another delivery.
    """

    def __init__(
        self,
        futures: Sequence[Any],
        *,
        sent_at: float | None = None,
        answered_since: AnsweredSince = _never,
    ) -> None:
        """Watch what ``KafkaProducer.send`` gave per record, in publish order.

        Args:
            futures: per record, the future it returned or the ``KafkaError`` it raised.
            sent_at: the monotonic time the send began (now when omitted).
            answered_since: whether the broker answered a metadata request since a time: a
                topic whose metadata did not come in time is refused only if it did.
        """
        self._sent_at = time.monotonic() if sent_at is None else sent_at
        self._answered_since = answered_since
        self._lock = threading.Lock()
        # per record: None while unanswered, _ACKED, or the error the producer reported
        self._states: list[str | BaseException | None] = [None] * len(futures)
        self._open = len(futures)
        # callbacks until every record is settled, then None; no Event: one costs a replayed
        # duplicate more CPU than the rest of its delivery, and only ``wait`` needs one
        self._callbacks: list[OnSettled] | None = [] if futures else None
        for position, future in enumerate(futures):
            if isinstance(future, BaseException):
                self._settle(position, future)
            else:
                future.add_callback(self._settle, position)
                future.add_errback(self._settle, position)

    def _settle(self, position: int, answer: object) -> None:
        with self._lock:
            self._states[position] = answer if isinstance(answer, BaseException) else _ACKED
            self._open -= 1
            if self._open or self._callbacks is None:
                return
            callbacks, self._callbacks = self._callbacks, None
        error = self._error()
        for callback in callbacks:
            callback(error)

    def on_settled(self, callback: OnSettled) -> None:
        """Call ``callback(error)`` once every record is settled; at once if they are."""
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(callback)
                return
        callback(self._error())

    def wait(self, timeout: float) -> SinkError | None:
        """Wait at most ``timeout`` seconds: None when every record was acknowledged."""
        settled = threading.Event()
        self.on_settled(lambda _error: settled.set())
        settled.wait(timeout)
        return self._error()

    def _error(self) -> SinkError | None:
        with self._lock:
            states = list(self._states)
        unacked = [position for position, state in enumerate(states) if state is not _ACKED]
        if not unacked:
            return None
        too_large = [p for p in unacked if isinstance(states[p], MessageSizeTooLargeError)]
        # no metadata in time is the topic's refusal only if the broker answered metadata
        # meanwhile (it lacks the topic); otherwise it is an outage, and the reply keeps its topic
        broker_up = self._answered_since(self._sent_at)
        refused = [
            p
            for p in unacked
            if isinstance(states[p], TOPIC_REFUSALS)
            or (broker_up and isinstance(states[p], KafkaTimeoutError))
        ]
        unsendable = [p for p in unacked if isinstance(states[p], Unsendable)]
        reasons = {
            type(states[p]).__name__ if states[p] is not None else "no answer in time"
            for p in unacked
        }
        return SinkError(
            f"broker did not acknowledge {len(unacked)} of {len(states)} records: "
            + ", ".join(sorted(reasons)),
            unacked=unacked,
            too_large=too_large,
            topic_refused=refused,
            unsendable=unsendable,
        )


class Unsendable(Exception):  # noqa: N818 -- a settled state, named for what the record is
    """The producer refused a record with an exception other than ``KafkaError``.

    kafka-python asserts (a record with neither key nor value) and raises ``TypeError`` or
    ``ValueError`` for what it cannot encode: never an exception that escapes the answering
    path, always a record settled as failed, which the answerer shrinks or re-sends.
    """


# the broker refused the record's topic (missing, not authorised, invalid) rather than the
# record; a KafkaTimeoutError (no metadata in time: a missing topic with auto-creation off,
# or a broker outage) counts only if the broker answered a metadata request meanwhile
TOPIC_REFUSALS = (
    UnknownTopicOrPartitionError,
    TopicAuthorizationFailedError,
    InvalidTopicError,
)


class RecordSink:
    """One idempotent ``acks=all`` producer shared by all threads (it is thread-safe)."""

    def __init__(
        self,
        connection: Connection,
        *,
        client_id: str,
        start_delays: Iterable[float] | None = None,
    ) -> None:
        """Connect the producer, waiting for a broker while none answers.

        kafka-python asks a broker for its version when the producer is made; a worker that
        starts while the brokers are down or paused waits for them (nemesis seed 1415: it
        exited with ``NoBrokersAvailable``) instead of dying.

        Args:
            connection: the settings, or ``security.connection_options(settings)``.
            client_id: names this worker in broker logs.
            start_delays: the waits between attempts; None: doubling to 30 s, forever.

        Raises:
            NoBrokersAvailable: no broker answered and ``start_delays`` ran out.
        """
        # monotonic time of the broker's last metadata answer (kafka-python's listener)
        self._metadata_at: float | None = None
        delays = iter(start_delays) if start_delays is not None else _start_delays()
        while True:
            try:
                self._producer = open_acked_producer(
                    connection,
                    client_id=client_id,
                    max_request_size=MAX_REQUEST_SIZE,
                    max_block_ms=MAX_BLOCK_MS,
                    delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
                )
                break
            except NoBrokersAvailable:
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("kafka_unreachable_at_start", retry_in=delay)
                time.sleep(delay)
        # kafka-python exposes no public hook for "the broker answered metadata": its
        # cluster's listeners run after every successful metadata response
        self._producer._metadata.add_listener(self._metadata_answered)

    def send(self, records: Sequence[OutboundRecord]) -> Delivery:
        """Hand ``records`` to the producer without waiting for the broker.

        Every record is settled within the producer's delivery timeout
        (``DELIVERY_TIMEOUT_MS``), acknowledged or failed.
        """
        began = time.monotonic()
        futures: list[Any] = []
        for record in records:
            try:
                futures.append(
                    self._producer.send(
                        record.topic,
                        key=record.key,
                        value=record.value,
                        headers=list(record.headers),
                    )
                )
            except KafkaError as exc:  # refused before sending: too large, no metadata in time
                futures.append(exc)
            # kafka-python's other refusals (AssertionError, TypeError, ...) settle the record
            # as failed: an exception here would leave the request's offset unfinished
            except Exception as exc:  # noqa: BLE001 -- kept as the record's failure
                futures.append(Unsendable(f"{type(exc).__name__}: {exc}"))
        return Delivery(futures, sent_at=began, answered_since=self._answered_since)

    def _metadata_answered(self, _cluster: object) -> None:
        self._metadata_at = time.monotonic()

    def _answered_since(self, since: float) -> bool:
        last = self._metadata_at
        return last is not None and last >= since

    def publish(
        self, records: Sequence[OutboundRecord], *, timeout: float = DEFAULT_ACK_TIMEOUT
    ) -> None:
        """Send ``records`` and return once the broker acknowledged every one of them.

        Raises:
            SinkError: when any record was not acknowledged within ``timeout`` seconds;
                it names the unacknowledged records and those refused as too large.
        """
        error = self.send(records).wait(timeout)
        if error is not None:
            raise error

    def close(self, timeout: float = 10.0) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=timeout)
