"""The floor of a new run without the kept libraries: librdkafka and ``http.client``.

``bench.floor``'s loop with confluent-kafka (librdkafka, C) instead of kafka-python and the
standard library's ``http.client`` (one keep-alive connection per thread) instead of
requests: what the work itself costs on this machine, and so what keeping kafka-python and
requests costs per run, beside ``bench.floor`` in the same run. A measurement only; the
worker keeps its libraries. Run by the benchmark as ``python -m bench.floor_native MAJOR
THREADS``.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests
from confluent_kafka import Consumer, Producer

from bench.baseline_io import emit, setting, stop_on_sigterm
from bench.naive import STATUS_BY_CODE, airflow_session, trigger_call

POLL_BATCH = 500  # kafka-python's max_poll_records default, as bench.floor polls


class Airflow:
    """POSTs runs over one keep-alive ``http.client`` connection per thread."""

    def __init__(self, major: str) -> None:
        """Log in once (requests, before the measurement) and keep the header it gives."""
        self.major = major
        url = urlsplit(setting("AIRFLOW_URL"))
        if url.scheme != "http":  # the devstack's bench Airflow speaks plain HTTP
            raise SystemExit(f"bench.floor_native speaks plain HTTP only, not {url.scheme}")
        self.host, self.port, self.base = url.hostname or "127.0.0.1", url.port, url.path
        # the Authorization header a logged-in session sends (JWT on 3, basic auth on 2)
        probe = airflow_session(major).prepare_request(requests.Request("POST", url.geturl()))
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": probe.headers["Authorization"],
        }
        self.local = threading.local()

    def trigger(self, request: dict[str, Any]) -> str:
        """POST one run; the reply status (``error`` for anything but 200/409)."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        path, body = trigger_call(self.major, request)
        try:
            conn.request("POST", self.base + path, json.dumps(body), self.headers)
            answer = conn.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            return "error"
        return STATUS_BY_CODE.get(answer.status, "error")


def main(argv: list[str]) -> int:
    """Trigger and answer each polled batch until SIGTERM."""
    major = argv[0] if argv else "3"
    threads = int(argv[1]) if len(argv) > 1 else 4
    stop = stop_on_sigterm()
    servers = setting("KAFKA_BOOTSTRAP_SERVERS")
    assigned = threading.Event()
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": setting("KAFKA_GROUP_ID"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(
        [setting("REQUEST_TOPIC")],
        on_assign=lambda _c, partitions: _announce(partitions, assigned),
    )
    producer = Producer(
        {"bootstrap.servers": servers, "acks": "all", "enable.idempotence": True, "linger.ms": 0}
    )
    airflow = Airflow(major)
    replies = setting("REPLY_TOPIC")

    def handle(message: Any) -> str:
        request = json.loads(message.value())
        status = airflow.trigger(request)
        reply = {"idempotency_key": request["idempotency_key"], "status": status}
        producer.produce(replies, json.dumps(reply).encode(), message.key())
        producer.poll(0)  # serve the delivery reports; the flush below waits for the acks
        return status

    calls = errors = 0
    with ThreadPoolExecutor(threads) as pool:
        while not stop.is_set():
            batch = [m for m in consumer.consume(POLL_BATCH, timeout=0.2) if m.error() is None]
            if batch:
                statuses = list(pool.map(handle, batch))
                producer.flush()  # every reply acknowledged before the commit covers it
                consumer.commit(asynchronous=False)
                calls += len(statuses)
                errors += statuses.count("error")
    consumer.close()
    producer.flush()
    emit("summary", airflow_calls=calls, errors=errors)
    return 0


def _announce(partitions: list[Any], assigned: threading.Event) -> None:
    if partitions and not assigned.is_set():
        assigned.set()
        emit(
            "partitions_assigned", partitions=sorted(f"{p.topic}-{p.partition}" for p in partitions)
        )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
