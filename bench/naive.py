"""The naive consumer: poll one message, POST, produce the reply, commit, next.

What a first version of this worker would look like: no concurrency, no store, no retries.
Run by the benchmark as ``python -m bench.naive MAJOR``.
"""

from __future__ import annotations

import json
import sys

import requests
from kafka import KafkaProducer

from bench.baseline_io import (
    AssignmentAnnouncer,
    finish,
    setting,
    stop_on_sigterm,
    subscribed_consumer,
)
from consumer.run_id import run_id_for

STATUS_BY_CODE = {200: "triggered", 409: "duplicate"}


def airflow_session(major: str) -> requests.Session:
    """A session logged in the way the API version wants (JWT on 3, basic auth on 2)."""
    session = requests.Session()
    url, user, password = (
        setting(n) for n in ("AIRFLOW_URL", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD")
    )
    if major == "2":
        session.auth = (user, password)
        return session
    answer = requests.post(
        f"{url}/auth/token", json={"username": user, "password": password}, timeout=10
    )
    answer.raise_for_status()
    session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return session


def trigger_call(major: str, request: dict[str, object]) -> tuple[str, dict[str, object]]:
    """The path (below the Airflow URL) and JSON body that trigger ``request``'s run."""
    version = "v2" if major == "3" else "v1"
    body: dict[str, object] = {
        "dag_run_id": run_id_for(str(request["idempotency_key"])),
        "conf": request.get("conf") or {},
    }
    if major == "3":
        body["logical_date"] = None
    return f"/api/{version}/dags/{request['dag_id']}/dagRuns", body


def trigger(session: requests.Session, major: str, request: dict[str, object]) -> str:
    """POST one run; the reply status (``error`` for anything but 200/409)."""
    path, body = trigger_call(major, request)
    try:
        code = session.post(setting("AIRFLOW_URL") + path, json=body, timeout=30).status_code
    except requests.RequestException:
        return "error"
    return STATUS_BY_CODE.get(code, "error")


def main() -> int:
    """Handle one message at a time until SIGTERM."""
    major = sys.argv[1] if len(sys.argv) > 1 else "3"
    stop = stop_on_sigterm()
    consumer = subscribed_consumer(enable_auto_commit=False, max_poll_records=1)
    producer = KafkaProducer(bootstrap_servers=setting("KAFKA_BOOTSTRAP_SERVERS"), acks="all")
    session = airflow_session(major)
    announcer = AssignmentAnnouncer(consumer)
    replies = setting("REPLY_TOPIC")
    calls = errors = 0
    while not stop.is_set():
        for records in consumer.poll(timeout_ms=200, max_records=1).values():
            for record in records:
                request = json.loads(record.value)
                status = trigger(session, major, request)
                calls += 1
                errors += status == "error"
                reply = {"idempotency_key": request["idempotency_key"], "status": status}
                producer.send(replies, key=record.key, value=json.dumps(reply).encode()).get(30)
                consumer.commit()
        announcer.check()
    return finish(consumer, producer, airflow_calls=calls, errors=errors)


if __name__ == "__main__":
    raise SystemExit(main())
