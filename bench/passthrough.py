"""Raw passthrough: kafka-python consume → produce the value to the reply topic, nothing else.

The floor under any Kafka worker written with kafka-python: what a duplicate replay would
cost if the worker added nothing. Run by the benchmark as ``python -m bench.passthrough``.
"""

from __future__ import annotations

from kafka import KafkaProducer

from bench.baseline_io import (
    AssignmentAnnouncer,
    emit,
    setting,
    stop_on_sigterm,
    subscribed_consumer,
)


def main() -> int:
    """Copy records until SIGTERM (offsets auto-committed, kafka-python's default)."""
    stop = stop_on_sigterm()
    consumer = subscribed_consumer()
    producer = KafkaProducer(bootstrap_servers=setting("KAFKA_BOOTSTRAP_SERVERS"))
    announcer = AssignmentAnnouncer(consumer)
    replies = setting("REPLY_TOPIC")
    copied = 0
    while not stop.is_set():
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                producer.send(replies, key=record.key, value=record.value)
                copied += 1
        announcer.check()
    producer.flush()
    consumer.close()
    producer.close()
    emit("summary", airflow_calls=0, errors=0, handled=copied)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
