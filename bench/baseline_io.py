"""What the baseline programs share: their settings from the worker's env, and how they talk.

They print JSON lines like the worker's log (``partitions_assigned`` once they own
partitions, ``summary`` when SIGTERM stops them), so one runner drives them and the worker.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

from kafka import KafkaConsumer, KafkaProducer


def setting(name: str) -> str:
    """A ``TRIGGER_CONSUMER_*`` value of the environment the runner built (``rig.worker_env``)."""
    return os.environ[f"TRIGGER_CONSUMER_{name}"]


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout (the runner reads the log file)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def finish(consumer: KafkaConsumer, producer: KafkaProducer, **summary: Any) -> int:
    """Close both clients (the producer flushes), print the ``summary`` line; exit code 0."""
    consumer.close()
    producer.close()
    emit("summary", **summary)
    return 0


def stop_on_sigterm() -> threading.Event:
    """An event set by SIGTERM: the program finishes its message and exits."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def subscribed_consumer(**options: Any) -> KafkaConsumer:
    """A group member on the request topic, reading a new group from the earliest offset."""
    consumer = KafkaConsumer(
        bootstrap_servers=setting("KAFKA_BOOTSTRAP_SERVERS"),
        group_id=setting("KAFKA_GROUP_ID"),
        auto_offset_reset="earliest",
        **options,
    )
    consumer.subscribe([setting("REQUEST_TOPIC")])
    return consumer


class AssignmentAnnouncer:
    """Emits ``partitions_assigned`` the first time the consumer owns partitions."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        """Watch ``consumer``."""
        self.consumer = consumer
        self.done = False

    def check(self) -> None:
        """Call after each poll."""
        if not self.done and self.consumer.assignment():
            self.done = True
            emit("partitions_assigned", partitions=sorted(map(str, self.consumer.assignment())))
