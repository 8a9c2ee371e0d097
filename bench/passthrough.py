"""Raw passthrough: kafka-python consume → produce the value to the reply topic, nothing else.

The floor under any Kafka worker written with kafka-python: what a duplicate replay would
cost if the worker added nothing. With ``--acked`` it produces as the worker does (the
worker's idempotent ``acks=all`` producer, a callback on every record's acknowledgement):
the floor of a worker that knows each reply was acknowledged before it commits. Run by the
benchmark as ``python -m bench.passthrough [--acked]``.
"""

from __future__ import annotations

import sys

from kafka import KafkaProducer

from bench.baseline_io import (
    AssignmentAnnouncer,
    finish,
    setting,
    stop_on_sigterm,
    subscribed_consumer,
)
from consumer.kafka_io.clients import open_acked_producer


class AckCounter:
    """Counts acknowledged records: the least a worker that waits for acks must do per record."""

    def __init__(self) -> None:
        """Start at zero."""
        self.acked = 0

    def __call__(self, _metadata: object) -> None:
        """One record acknowledged (called on the producer's thread)."""
        self.acked += 1


def main(argv: list[str]) -> int:
    """Copy records until SIGTERM (offsets auto-committed, kafka-python's default)."""
    acked = "--acked" in argv
    stop = stop_on_sigterm()
    consumer = subscribed_consumer()
    servers = setting("KAFKA_BOOTSTRAP_SERVERS")
    producer = (
        open_acked_producer({"bootstrap_servers": servers})
        if acked
        else KafkaProducer(bootstrap_servers=servers)
    )
    announcer = AssignmentAnnouncer(consumer)
    replies = setting("REPLY_TOPIC")
    counter = AckCounter()
    copied = 0
    while not stop.is_set():
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                future = producer.send(replies, key=record.key, value=record.value)
                if acked:
                    future.add_callback(counter)
                copied += 1
        announcer.check()
    producer.flush()
    # with --acked, every copied record's acknowledgement was counted by the flush above
    return finish(
        consumer, producer, airflow_calls=0, errors=0, handled=copied, acked=counter.acked
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
