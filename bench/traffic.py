"""The load of one contender: produce N requests, collect the replies, time each key.

A burst (``produce_burst``) sends every request as fast as the producer goes; latency is
produce time → reply acked, both read as Kafka CreateTime stamps on this host: the
request's from the broker's ack of our producer, the reply's from the record the
contender wrote (stamped at its send, a few ms before the broker's ack).

A steady load (``produce_steady``) is open loop: request i is due at start + i / rate
whatever the replies do, and its latency counts from that due time (wall clock), so a
late send is charged to the contender's latency rather than hidden (no coordinated
omission).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.rig import request_value

# the routed contender's one route: application events become requests for the run's DAG
ROUTE_NAME = "bench-route"
ROUTE_KEY_PREFIX = f"{ROUTE_NAME}:"


def route_table(topic: str, dag_id: str) -> str:
    """``TRIGGER_CONSUMER_ROUTES``: one route from ``topic``'s app events to ``dag_id``."""
    return json.dumps(
        [
            {
                "name": ROUTE_NAME,
                "topics": [topic],
                "match": "type == 'bench.event'",
                "dag_id": dag_id,
                "idempotency_key": "{id}",
                "conf": {"i": "seq"},
            }
        ]
    )


def event_value(key: str, dag_id: str) -> bytes:
    """An application's own event (not a trigger request), carrying ``key`` as its id."""
    return json.dumps({"type": "bench.event", "id": key, "seq": key[-6:], "dag": dag_id}).encode()


OK_STATUSES = frozenset({"triggered", "duplicate", None})
STALL_SECONDS = 60.0  # no reply for this long: the contender collapsed; stop piling on load


@dataclass
class Replies:
    """What came back: first reply time and status per key."""

    at_ms: dict[str, int] = field(default_factory=dict)
    status: dict[str, str | None] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        """Replies whose status is not a success (``rejected``, ``error``)."""
        return sum(1 for s in self.status.values() if s not in OK_STATUSES)


class ReplyCollector(threading.Thread):
    """Reads a reply topic from its beginning until ``expected`` keys answered or a deadline."""

    def __init__(
        self, bootstrap: str, topic: str, expected: int, timeout: float, *, key_prefix: str = ""
    ) -> None:
        """Prepare the collector; ``start`` it before the requests are produced.

        ``key_prefix`` is cut from reply keys (a route's derived keys name the route).
        """
        self.key_prefix = key_prefix
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.topic = topic
        self.expected = expected
        self.deadline = time.monotonic() + timeout
        self.replies = Replies()
        self.ready = threading.Event()

    def run(self) -> None:
        """Assign every partition, then poll until done (bounded by the deadline)."""
        try:
            partitions = None
            while not partitions and time.monotonic() < self.deadline:
                partitions = self.consumer.partitions_for_topic(self.topic)
                time.sleep(0 if partitions else 0.2)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions or ())]
            self.consumer.assign(assigned)
            self.consumer.seek_to_beginning(*assigned)
            self.ready.set()
            progress = time.monotonic()
            while len(self.replies.at_ms) < self.expected and time.monotonic() < self.deadline:
                for records in self.consumer.poll(timeout_ms=200).values():
                    for record in records:
                        self._take(record)
                        progress = time.monotonic()
                if time.monotonic() - progress > STALL_SECONDS:
                    break
        finally:
            self.ready.set()
            self.consumer.close()

    def _take(self, record: Any) -> None:
        key = record.key.decode() if record.key else ""
        key = key.removeprefix(self.key_prefix)
        if key in self.replies.at_ms:
            return
        try:
            reply = json.loads(record.value)
        except ValueError:
            reply = {}
        self.replies.at_ms[key] = record.timestamp
        self.replies.status[key] = reply.get("status") if isinstance(reply, dict) else None
        if isinstance(reply, dict) and isinstance(reply.get("attempts"), int):
            self.replies.attempts[key] = reply["attempts"]


def produce_burst(
    bootstrap: str,
    topic: str,
    keys: list[str],
    dag_id: str,
    *,
    routed: bool = False,
    track: bool = False,
) -> dict[str, int]:
    """Write one request per key as fast as the producer goes; return each one's timestamp (ms).

    With ``routed``, each is an application event for ``ROUTE`` instead of a request; with
    ``track``, each request asks for a ``completed`` reply.
    """

    def value_of(key: str) -> bytes:
        return event_value(key, dag_id) if routed else request_value(key, dag_id, track=track)

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    try:
        futures = {key: producer.send(topic, key=key.encode(), value=value_of(key)) for key in keys}
        return {key: future.get(timeout=60).timestamp for key, future in futures.items()}
    finally:
        producer.close()


def produce_steady(
    bootstrap: str, topic: str, keys: list[str], dag_id: str, rate: float
) -> dict[str, int]:
    """Write one request per key at ``rate`` per second; return each one's due time (ms).

    Each send starts at its due time (or at once when the producer is late); the due
    times, not the broker's stamps, are returned: the open loop's clock.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    start = time.time() + 0.2
    due: dict[str, int] = {}
    futures = []
    try:
        for i, key in enumerate(keys):
            at = start + i / rate
            delay = at - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(producer.send(topic, key=key.encode(), value=request_value(key, dag_id)))
            due[key] = round(at * 1000)
        for future in futures:
            future.get(timeout=60)
        return due
    finally:
        producer.close()


def drive(
    bootstrap: str,
    topics: tuple[str, str],
    keys: list[str],
    dag_id: str,
    timeout: float,
    *,
    queued: dict[str, int] | None = None,
    rate: float | None = None,
    routed: bool = False,
) -> tuple[dict[str, int], Replies]:
    """Produce ``keys`` to ``topics[0]`` and wait (bounded) for their replies on ``topics[1]``.

    Args:
        bootstrap: the brokers.
        topics: the request and reply topics.
        keys: one request per key.
        dag_id: the DAG the requests name.
        timeout: seconds to wait for the replies at most.
        queued: the produce timestamps of requests already queued (``produce_burst``
            before the contender started); nothing more is produced then.
        rate: produce at this steady rate per second (``produce_steady``) instead of
            in a burst.
        routed: produce application events for ``ROUTE`` (bursts only); their replies
            are keyed by the route's derived key.

    Returns:
        The produce timestamp (steady: due time) of each key, and the replies that came
        back in time.
    """
    collector = ReplyCollector(
        bootstrap, topics[1], len(keys), timeout, key_prefix=ROUTE_KEY_PREFIX if routed else ""
    )
    collector.start()
    collector.ready.wait(timeout=60)
    if queued is not None:
        sent = queued
    elif rate is not None:
        sent = produce_steady(bootstrap, topics[0], keys, dag_id, rate)
    else:
        sent = produce_burst(bootstrap, topics[0], keys, dag_id, routed=routed)
    collector.join(timeout=timeout + 30)
    return sent, collector.replies
