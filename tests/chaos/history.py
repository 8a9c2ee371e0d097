"""History: what a trial left behind, recorded from the servers, for the checker.

Every record of the request and event topics (read twice: ``read_committed`` for what the
worker must answer, ``read_uncommitted`` for what aborted transactions left), every reply
and dead letter, the group's committed offsets and the topics' ends (an admin client),
and Airflow's runs of the trial (the REST list endpoint, by the trial's token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from consumer.kafka_io.source import MAX_FRAME_BYTES
from devstack.airflow import AirflowServer
from tests.waiting import wait_until

PAGE = 100
MAX_PAGES = 1000


@dataclass(frozen=True)
class Message:
    """One Kafka record as read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def position(self) -> tuple[str, int, int]:
        """(topic, partition, offset)."""
        return (self.topic, self.partition, self.offset)

    def header(self, name: str) -> str:
        """A header's value as text ('' when absent)."""
        return self.headers.get(name, b"").decode(errors="replace")

    def json(self) -> Any:
        """The value parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.value) if self.value is not None else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Run:
    """An Airflow DAG run."""

    dag_id: str
    run_id: str
    state: str
    conf: dict[str, Any]


@dataclass
class History:
    """Everything the checker reads; built by ``record`` or by hand in tests.

    Attributes:
        request_topic: the topic of trigger requests.
        event_topic: the topic of route events ('' when routes are off).
        routes: the route names every event fans out to.
        requests: committed records of the request and event topics, in log order.
        aborted: records in the log that no committed read returns (aborted transactions).
        replies: every reply record.
        dead_letters: every dead-letter record.
        runs: Airflow's runs whose id contains the trial's token.
        committed: the group's committed offset per (topic, partition).
        ends: each (topic, partition)'s end offset, of the request and event topics.
        readiness: each replica's /readyz status and reasons at the end.
        deaths: replicas that exited without the nemesis killing them.
        killed: the process ids the nemesis SIGKILLed, with when (a reply's ``worker`` names
            its pid, its ``processed_at`` when it was built).
    """

    request_topic: str
    event_topic: str = ""
    routes: tuple[str, ...] = ()
    requests: list[Message] = field(default_factory=list)
    aborted: list[Message] = field(default_factory=list)
    replies: list[Message] = field(default_factory=list)
    dead_letters: list[Message] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    readiness: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    deaths: list[str] = field(default_factory=list)
    killed: dict[int, datetime] = field(default_factory=dict)


def read_topic(bootstrap: str, topic: str, *, committed_only: bool) -> list[Message]:
    """Every record of ``topic`` from its beginning to its current end, in log order.

    Args:
        bootstrap: the brokers.
        topic: what to read.
        committed_only: ``read_committed`` (skips aborted transactions) or everything.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        receive_message_max_bytes=MAX_FRAME_BYTES,
    )
    try:
        partitions = wait_until(
            lambda: consumer.partitions_for_topic(topic), timeout=60, what=f"topic {topic}"
        )
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)  # read_committed: the last stable offset
        seen: list[Message] = []

        def at_end() -> bool:
            for records in consumer.poll(timeout_ms=300).values():
                seen.extend(
                    Message(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        {k: v or b"" for k, v in r.headers},
                    )
                    for r in records
                )
            return all(consumer.position(tp) >= ends[tp] for tp in assigned)

        wait_until(at_end, timeout=120, what=f"the end of {topic}")
        return sorted(seen, key=lambda m: m.position)
    finally:
        consumer.close()


def offsets(bootstrap: str, group: str, topics: list[str]) -> tuple[dict[Any, int], dict[Any, int]]:
    """The group's committed offsets and the end offsets of ``topics``, by (topic, partition)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        done = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
        ]
        ends = consumer.end_offsets(parts)
    finally:
        consumer.close()
    committed = {(tp.topic, tp.partition): m.offset for tp, m in done.items() if tp.topic in topics}
    return committed, {(tp.topic, tp.partition): end for tp, end in ends.items()}


def list_runs(server: AirflowServer, token: str) -> list[Run]:
    """Every run, in any DAG, whose run id contains ``token`` (Airflow 3's list endpoint)."""
    session = server.session()
    runs: list[Run] = []
    for page in range(MAX_PAGES):
        answer = wait_until(
            lambda page=page: _page(session, server, token, page), timeout=120, what="run list"
        )
        body = answer.json()
        runs += [
            Run(r["dag_id"], r["dag_run_id"], r["state"], r.get("conf") or {})
            for r in body["dag_runs"]
        ]
        if (page + 1) * PAGE >= body["total_entries"]:
            break
    return runs


def _page(
    session: requests.Session, server: AirflowServer, token: str, page: int
) -> requests.Response | None:
    try:
        answer = session.get(
            f"{server.url}/api/v2/dags/~/dagRuns",
            params={"run_id_pattern": token, "limit": PAGE, "offset": page * PAGE},
            timeout=30,
        )
    except requests.RequestException:
        return None
    return answer if answer.status_code == 200 else None
