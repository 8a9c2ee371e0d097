"""`make demo`: the main job end to end on the local stack (Kafka + Airflow 3 + the worker)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from devstack.procs import StackError
from devstack.stack import Stack, say
from devstack.worker_env import worker_environment

TOPICS = {"dag-trigger-requests": 3, "dag-trigger-replies": 1, "dag-trigger-dlq": 1}


def create_topics(bootstrap: str) -> None:
    """Create the default topics (requests with 3 partitions) unless they exist."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for name, partitions in TOPICS.items():
            try:
                admin.create_topics([NewTopic(name, partitions, 1)])
            except TopicAlreadyExistsError:
                continue
    finally:
        admin.close()


def send(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``trigger-consumer send --wait`` and its printed reply."""
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "send", "--wait", "--timeout", "60", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if not done.stdout.strip():
        raise StackError(f"send printed no reply: {done.stderr[-2000:]}")
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def main() -> int:
    """Start the stack and a worker, send three requests, print the replies."""
    stack = Stack()
    doc = stack.up(kafka=True, airflow=("3",))
    create_topics(doc["kafka"]["bootstrap_servers"])
    env = worker_environment(
        bootstrap=doc["kafka"]["bootstrap_servers"],
        airflow=stack.airflow_server("3"),
        store=Path(doc["run_dir"]) / "demo-store.db",
    )
    log = Path(doc["run_dir"]) / "demo-worker.log"
    say(f"starting the worker (log: {log})")
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"], env=env, stdout=out, stderr=out
        )
    try:
        # no wait for the worker to join: a new group starts at the earliest offset, and
        # `send --wait` listens for the reply before it sends
        key = f"demo-{uuid.uuid4().hex[:8]}"
        cases = [
            ("a new request", ["--dag", "devstack_plain", "--key", key, "--conf", '{"n": 1}']),
            (
                "the same request again",
                ["--dag", "devstack_plain", "--key", key, "--conf", '{"n": 1}'],
            ),
            ("a DAG outside the allow-list", ["--dag", "admin_only_dag"]),
        ]
        for title, args in cases:
            reply = send(env, *args)
            error = reply["error"]["code"] if reply["error"] else ""
            print(f"\n== {title}: {reply['status']} {error}")
            print(json.dumps(reply, indent=2))
        airflow = doc["airflow"]["3"]
        print(f"\nThe runs in the Airflow UI (admin / {airflow['password']}):")
        print(f"  {airflow['url']}/dags/devstack_plain")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    say("the stack keeps running: python -m devstack down stops it")
    return 0
