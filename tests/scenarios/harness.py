"""A worker process on the real stack, and Kafka helpers to feed it and read what it wrote."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from consumer.kafka_io.source import MAX_FRAME_BYTES
from consumer.run_id import run_id_for
from devstack.airflow import AirflowServer
from devstack.worker_env import worker_environment
from tests.conftest import unique_name
from tests.waiting import wait_until

Headers = list[tuple[str, bytes]]


@dataclass
class Topics:
    """The topics and group one scenario uses (unique per test)."""

    requests: str
    replies: str
    dlq: str
    group: str


@dataclass
class WorkerProcess:
    """``trigger-consumer run`` as a child process, logging JSON lines to ``log``."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def launch(self) -> int:
        """Start the worker without waiting for anything.

        Returns:
            The log's size before the start: where this run's lines begin.
        """
        mark = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        return mark

    def start(self) -> None:
        """Start the worker and wait until it owns partitions."""
        mark = self.launch()

        def assigned() -> bool:
            assert self.process is not None
            exited = self.process.poll() is not None  # before reading: a crash may follow
            with self.log.open("rb") as fh:
                fh.seek(mark)
                if any(
                    event.get("event") == "partitions_assigned" and event.get("partitions")
                    for event in _json_lines(fh.read())
                ):
                    return True
            if exited:
                raise AssertionError(f"worker exited {self.process.returncode}: {self.tail()}")
            return False

        wait_until(assigned, timeout=60, interval=0.2, what="worker owning partitions")

    def kill(self) -> None:
        """SIGKILL: a crash at an arbitrary moment."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit by itself."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        return list(_json_lines(self.log.read_bytes())) if self.log.exists() else []

    def tail(self, lines: int = 20) -> str:
        """The last log lines, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Make sure the process is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def _json_lines(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def worker_env(
    *,
    bootstrap: str,
    airflow: AirflowServer,
    topics: Topics,
    store: Path,
    password: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker on the devstack servers, with the scenario's topics."""
    env = worker_environment(
        bootstrap=bootstrap,
        airflow=airflow,
        store=store,
        password=password,
        kafka_group_id=topics.group,
        request_topic=topics.requests,
        reply_topic=topics.replies,
        dlq_topic=topics.dlq,
        http_port="0",
        shutdown_timeout="20s",
    )
    env.update(extra or {})
    return env


def request(key: str, dag_id: str = "devstack_paused", **fields: Any) -> bytes:
    """A request value as a producer would write it."""
    return json.dumps({"idempotency_key": key, "dag_id": dag_id, **fields}).encode()


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[tuple[bytes | None, bytes, Headers]],
    *,
    client_options: dict[str, Any] | None = None,
) -> None:
    """Write (key, value, headers) records and wait for the broker's acks.

    Args:
        bootstrap: the brokers.
        topic: where to write.
        values: (key, value, headers) of each record.
        client_options: extra producer arguments (security protocol, SASL, CA file).
    """
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **(client_options or {})
    )
    try:
        futures = [
            producer.send(topic, key=key, value=value, headers=headers)
            for key, value, headers in values
        ]
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close()


def read_all(
    bootstrap: str,
    topic: str,
    *,
    at_least: int,
    timeout: float = 120,
    client_options: dict[str, Any] | None = None,
) -> list[Any]:
    """Every record of ``topic`` up to its end, once there are at least ``at_least``.

    Args:
        bootstrap: the brokers.
        topic: what to read.
        at_least: how many records to wait for.
        timeout: seconds to wait for them.
        client_options: extra consumer arguments (security protocol, SASL, CA file).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        receive_message_max_bytes=MAX_FRAME_BYTES,  # the hostile tests' 10 MB records
        **(client_options or {}),
    )
    try:
        partitions = wait_until(
            lambda: consumer.partitions_for_topic(topic), timeout=30, what=f"topic {topic}"
        )
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        seen: list[Any] = []

        def enough() -> bool:
            for records in consumer.poll(timeout_ms=300).values():
                seen.extend(records)
            if len(seen) < at_least:
                return False
            # then everything up to the end, so that no later record is left out
            ends = consumer.end_offsets(assigned)
            return all(consumer.position(tp) >= ends[tp] for tp in assigned)

        wait_until(enough, timeout=timeout, what=f"{at_least} records on {topic}")
        return seen
    finally:
        consumer.close()


def replies_by_key(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Reply values grouped by idempotency key (records without one are under '')."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        reply = json.loads(record.value)
        grouped.setdefault(reply["idempotency_key"] or "", []).append(reply)
    return grouped


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic``."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def existing_runs(server: AirflowServer, dag_id: str, keys: Iterable[str]) -> set[str]:
    """The keys whose derived run exists in Airflow (only a 404 means "no run").

    Any other non-200 answer (a 5xx under load) is asked again until it is 200 or 404.
    """
    session = server.session()
    base = f"{server.url}/api/{server.api_version}/dags/{dag_id}/dagRuns"
    found = set()
    for key in keys:
        url = f"{base}/{run_id_for(key)}"
        status = wait_until(
            lambda url=url: (
                (code := session.get(url, timeout=30).status_code) in {200, 404} and code
            ),
            timeout=60,
            what=f"a definite answer for {url}",
        )
        if status == 200:
            found.add(key)
    return found


@contextmanager
def running(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    """Start ``worker`` and make sure it is gone afterwards."""
    try:
        worker.start()
        yield worker
    finally:
        worker.close()


def create_topics(bootstrap: str, *names: tuple[str, int]) -> None:
    """Create topics (name, partitions) and wait until each has its partitions."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, num_partitions=p, replication_factor=1) for n, p in names])
        wait_until(
            lambda: all(admin.describe_topics([n])[0]["partitions"] for n, _ in names),
            timeout=30,
            what="topics created",
        )
    finally:
        admin.close()


def topics_on(bootstrap: str, partitions: int = 3) -> Topics:
    """Unique request (``partitions``), reply and dead-letter topics and group on a broker."""
    topics = Topics(
        requests=unique_name("requests"),
        replies=unique_name("replies"),
        dlq=unique_name("dlq"),
        group=unique_name("group"),
    )
    create_topics(bootstrap, (topics.requests, partitions), (topics.replies, 1), (topics.dlq, 1))
    return topics


def all_committed(bootstrap: str, topics: Topics) -> bool:
    """Whether the group committed every partition of the request topic up to its end.

    A partition that never held a record needs no commit (its end is 0).
    """
    done = committed(bootstrap, topics.group, topics.requests)
    ends = end_offsets(bootstrap, topics.requests)
    return all(done.get(partition, 0) == end for partition, end in ends.items())
