"""The library floor of a new run: kafka-python consume, a requests POST, an acked produce.

Per polled batch it POSTs each request on a few threads (one shared ``requests`` session,
as the worker's connection reuse), produces each reply with the worker's idempotent
``acks=all`` producer, waits for the acks and commits. Nothing else the worker does:
no validation, policy, store, retries, limiter, tracking, metrics or log lines. Its CPU
per run is what any worker built on kafka-python and requests pays at least, beside the
worker's own in the same run. Run by the benchmark as ``python -m bench.floor MAJOR THREADS``.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.baseline_io import (
    AssignmentAnnouncer,
    finish,
    setting,
    stop_on_sigterm,
    subscribed_consumer,
)
from bench.naive import airflow_session, trigger
from consumer.kafka_io.clients import open_acked_producer


def main(argv: list[str]) -> int:
    """Trigger and answer each polled batch until SIGTERM."""
    major = argv[0] if argv else "3"
    threads = int(argv[1]) if len(argv) > 1 else 4
    stop = stop_on_sigterm()
    consumer = subscribed_consumer(enable_auto_commit=False)
    producer = open_acked_producer({"bootstrap_servers": setting("KAFKA_BOOTSTRAP_SERVERS")})
    session = airflow_session(major)
    announcer = AssignmentAnnouncer(consumer)
    replies = setting("REPLY_TOPIC")

    def handle(record: Any) -> str:
        request = json.loads(record.value)
        status = trigger(session, major, request)
        reply = {"idempotency_key": request["idempotency_key"], "status": status}
        producer.send(replies, key=record.key, value=json.dumps(reply).encode())
        return status

    calls = errors = 0
    with ThreadPoolExecutor(threads) as pool:
        while not stop.is_set():
            batch = [r for rs in consumer.poll(timeout_ms=200).values() for r in rs]
            if batch:
                statuses = list(pool.map(handle, batch))
                producer.flush()  # every reply acknowledged before the commit covers it
                consumer.commit()
                calls += len(statuses)
                errors += statuses.count("error")
            announcer.check()
    return finish(consumer, producer, airflow_calls=calls, errors=errors)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
