"""`trigger-consumer audit` on the real stack, against a history damaged on purpose.

One worker answers a range of requests on Airflow 3 with a SQLite store, or on Airflow 2
with a PostgreSQL store; then the history is damaged as issue 29 lists: a reply deleted by
compacting the reply topic, a reply written to a topic the audit does not read, a run
deleted in Airflow, a request produced while no worker runs, a request whose offset was
committed without any answer (an offset reset), a ``kafka__`` run no request made, and a
forged ``error`` reply contradicting a ``triggered`` one.
The audit must name each one, exit 1, repair the lost request, and agree on a clean range.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from consumer.run_id import run_id_for
from devstack.airflow import PASSWORD, AirflowServer
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    all_committed,
    end_offsets,
    produce,
    read_all,
    request,
    worker_env,
)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DAG = "devstack_paused"  # runs stay queued: nothing executes, the scheduler stays idle
STORE_PASSWORD = "audit-store-secret-5x9"
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.001",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


@dataclass
class Bench:
    """The scenario's servers, topics, keys and worker."""

    bootstrap: str
    airflow: AirflowServer
    topics: Topics
    side: str
    worker_env: dict[str, str]
    audit_env: dict[str, str]
    log: Path
    keys: dict[str, str]

    def worker(self) -> WorkerProcess:
        """A worker process with the scenario's settings (reply allow-list with ``side``)."""
        return WorkerProcess(env=self.worker_env, log=self.log)

    def audit(self, *flags: str) -> subprocess.CompletedProcess[str]:
        """Run ``audit`` with the audit's settings (``side`` is not on its allow-list)."""
        return subprocess.run(
            [sys.executable, "-m", "consumer", "audit", *flags],
            capture_output=True,
            text=True,
            encoding="utf-8",
            cwd=ROOT,
            env=self.audit_env,
            timeout=180,
            check=False,
        )

    def audit_json(self, *flags: str) -> tuple[int, dict[str, Any]]:
        """Run ``audit --json``; its exit code and document (no secret in any output)."""
        result = self.audit("--json", *flags)
        self.assert_no_secret(result)
        assert result.returncode in {0, 1}, result.stderr
        return result.returncode, json.loads(result.stdout)

    @staticmethod
    def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
        """Neither the store's nor Airflow's password appears in stdout or stderr."""
        for secret in (STORE_PASSWORD, PASSWORD):
            assert secret not in result.stdout
            assert secret not in result.stderr

    def run_api(self, method: str, path: str, **kwargs: Any) -> int:
        """Call Airflow's REST API as the admin; the status code."""
        session = self.airflow.session()
        url = f"{self.airflow.url}/api/{self.airflow.api_version}{path}"
        return session.request(method, url, timeout=30, **kwargs).status_code


@pytest.fixture(
    params=[("3", "sqlite"), ("2", "postgres")], ids=["airflow3-sqlite", "airflow2-postgres"]
)
def bench(
    request: pytest.FixtureRequest,
    kafka: KafkaCluster,
    new_topic: Callable[..., str],
    tmp_path: Path,
) -> Iterator[Bench]:
    """Topics (a compacted reply topic), a store and the settings of worker and audit."""
    major, store_kind = request.param
    airflow: AirflowServer = request.getfixturevalue(f"airflow{major}")
    topics = Topics(
        requests=new_topic(1, prefix="audit-requests"),
        replies=new_topic(1, prefix="audit-replies", config=COMPACTED),
        dlq=new_topic(1, prefix="audit-dlq"),
        group=unique_name("audit-group"),
    )
    side = new_topic(1, prefix="audit-side")
    extra = {"TRIGGER_CONSUMER_STORE_PASSWORD": STORE_PASSWORD}
    if store_kind == "postgres":
        extra["TRIGGER_CONSUMER_STORE_URL"] = request.getfixturevalue("new_database")
    env = worker_env(
        bootstrap=kafka.bootstrap_servers,
        airflow=airflow,
        topics=topics,
        store=tmp_path / "store.db",
        extra=extra,
    )
    prefix = unique_name("audit")
    names = ("ok1", "ok2", "side", "compacted", "deleted", "nodag", "invalid", "lost", "late")
    yield Bench(
        bootstrap=kafka.bootstrap_servers,
        airflow=airflow,
        topics=topics,
        side=side,
        worker_env={**env, "TRIGGER_CONSUMER_REPLY_TOPIC_ALLOWLIST": side},
        audit_env=env,
        log=tmp_path / "worker.log",
        keys={name: f"{prefix}-{name}" for name in names},
    )


def send(bench: Bench, *records: tuple[str, bytes]) -> None:
    """Produce (key, value) requests, keyed by the idempotency key."""
    produce(bench.bootstrap, bench.topics.requests, [(k.encode(), v, []) for k, v in records])


def wait_answered(bench: Bench, replies: int) -> None:
    """Wait until the group committed every request and ``replies`` replies exist."""
    wait_until(
        lambda: all_committed(bench.bootstrap, bench.topics),
        timeout=90,
        what="every request committed",
    )
    read_all(bench.bootstrap, bench.topics.replies, at_least=replies, timeout=30)


def reply_values(bench: Bench) -> dict[bytes | None, list[bytes | None]]:
    """Every value per key of the reply topic that compaction left."""
    consumer = KafkaConsumer(bootstrap_servers=bench.bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(bench.topics.replies, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        seen: dict[bytes | None, list[bytes | None]] = {}
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    seen.setdefault(record.key, []).append(record.value)
        return seen
    finally:
        consumer.close()


def compacted_away(bench: Bench, key: str) -> bool:
    """Roll the reply topic's segment (a filler record) and tell whether ``key``'s reply is gone.

    The log cleaner only cleans closed segments: each call appends a filler, which rolls
    the segment once ``segment.ms`` passed, until the cleaner removed the reply.
    """
    produce(bench.bootstrap, bench.topics.replies, [(b"filler", b"{}", [])])
    values = reply_values(bench).get(key.encode(), [])
    return all(value is None for value in values)


def commit_past_end(bench: Bench) -> None:
    """Commit the group's offset at the request topic's end: an offset reset past a request."""
    tp = TopicPartition(bench.topics.requests, 0)
    end = end_offsets(bench.bootstrap, bench.topics.requests)[0]
    consumer = KafkaConsumer(
        bootstrap_servers=bench.bootstrap, group_id=bench.topics.group, enable_auto_commit=False
    )
    try:
        consumer.commit({tp: OffsetAndMetadata(end, "", -1)})
    finally:
        consumer.close()


def damage(bench: Bench) -> str:
    """Answer a range of requests, then damage its history; the orphan run's id."""
    keys = bench.keys
    worker = bench.worker()
    try:
        worker.start()
        send(
            bench,
            (keys["ok1"], request(keys["ok1"], DAG)),
            (keys["ok2"], request(keys["ok2"], DAG)),
        )
        wait_answered(bench, 2)
        send(
            bench,
            (keys["side"], request(keys["side"], DAG, reply_topic=bench.side)),
            (keys["compacted"], request(keys["compacted"], DAG)),
            (keys["deleted"], request(keys["deleted"], DAG)),
            (keys["nodag"], request(keys["nodag"], "devstack_no_such_dag")),
            (keys["invalid"], b"{not json"),
        )
        wait_answered(bench, 6)  # side's reply went to the side topic
        assert worker.terminate() == 0
    finally:
        worker.close()
    # a request produced, then the group's offset moved past it: nothing will ever answer it
    send(bench, (keys["lost"], request(keys["lost"], DAG)))
    commit_past_end(bench)
    # a request produced while no worker runs
    send(bench, (keys["late"], request(keys["late"], DAG)))
    deleted = f"/dags/{DAG}/dagRuns/{run_id_for(keys['deleted'])}"
    assert bench.run_api("DELETE", deleted) == 204
    orphan = run_id_for(unique_name("audit-orphan"))
    body: dict[str, Any] = {"dag_run_id": orphan}
    if bench.airflow.major == "3":
        body["logical_date"] = None
    assert bench.run_api("POST", f"/dags/{DAG}/dagRuns", json=body) == 200
    # a second, contradicting reply to the request whose run was deleted, with no dead letter
    # (under a Kafka key of its own: compaction would otherwise drop the real reply)
    forged = forged_error(bench.topics.requests, 4, keys["deleted"])
    produce(bench.bootstrap, bench.topics.replies, [(b"forged", forged, [])])
    compacted = keys["compacted"]
    produce(bench.bootstrap, bench.topics.replies, [(compacted.encode(), None, [])])
    wait_until(lambda: compacted_away(bench, compacted), timeout=90, what="reply compacted away")
    return orphan


def forged_error(topic: str, offset: int, key: str) -> bytes:
    """An ``error`` reply to the request at ``offset``, as a faulty producer might write one."""
    return json.dumps(
        {
            "schema_version": 1,
            "idempotency_key": key,
            "correlation_id": key,
            "dag_id": DAG,
            "status": "error",
            "dag_run_id": None,
            "run_state": None,
            "logical_date": None,
            "run_url": None,
            "error": {"code": "airflow_rejected", "message": "forged", "details": {}},
            "source": {"topic": topic, "partition": 0, "offset": offset, "timestamp": None},
            "attempts": 1,
            "processed_at": "2026-12-07T00:00:00Z",
            "worker": "forger",
        }
    ).encode()


def keys_of(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by idempotency key."""
    return {row["idempotency_key"]: row for row in rows}


def test_audit_names_each_damage_repairs_the_lost_request_and_agrees_on_a_clean_range(
    bench: Bench,
) -> None:
    """Each damage is named (exit 1), --repair re-drives the lost request, a clean range agrees."""
    orphan = damage(bench)
    keys = bench.keys

    code, doc = bench.audit_json()
    assert code == 1
    assert doc["requests"] == 9
    unanswered = keys_of(doc["unanswered"])
    assert set(unanswered) == {keys[n] for n in ("side", "compacted", "lost", "late")}
    expected = {  # committed, run_exists, store_status
        "side": (True, True, "triggered"),
        "compacted": (True, True, "triggered"),
        "lost": (True, False, None),
        "late": (False, False, None),
    }
    for name, (committed, run_exists, store) in expected.items():
        row = unanswered[keys[name]]
        assert (row["committed"], row["run_exists"], row["store_status"]) == (
            committed,
            run_exists,
            store,
        ), name
    (missing,) = doc["missing_runs"]
    assert missing["dag_run_id"] == run_id_for(keys["deleted"])
    assert missing["evidence"] == ["reply triggered", "store triggered"]
    assert orphan in {run["dag_run_id"] for run in doc["orphan_runs"]}
    assert not {run["dag_run_id"] for run in doc["orphan_runs"]} & {
        run_id_for(key) for key in keys.values()
    }
    assert doc["dead_letters"] == {"dag_not_found": 1, "invalid_json": 1}
    (disagreeing,) = doc["disagreeing_keys"]
    assert disagreeing["idempotency_key"] == keys["deleted"]
    assert disagreeing["reasons"] == [
        f"request {bench.topics.requests}/0@4 was answered both triggered and error"
    ]
    assert [row["offset"] for row in doc["not_dead_lettered"]] == [4]
    assert doc["reply_topics"] == [bench.topics.replies]

    before = end_offsets(bench.bootstrap, bench.topics.requests)[0]
    code, doc = bench.audit_json("--repair")
    assert (code, doc["repaired"]) == (1, 1)
    copies = read_all(bench.bootstrap, bench.topics.requests, at_least=before + 1)[before:]
    assert [(c.key, dict(c.headers)["replayed-from"]) for c in copies] == [
        (keys["lost"].encode(), f"{bench.topics.requests}/0/7".encode())
    ]

    worker = bench.worker()
    try:
        worker.start()
        wait_answered(bench, 1)
        wait_until(
            lambda: {keys["lost"], keys["late"]} <= answered_keys(bench),
            timeout=60,
            what="the late and the re-driven request answered",
        )
        assert worker.terminate() == 0
    finally:
        worker.close()
    code, doc = bench.audit_json()
    assert code == 1
    assert set(keys_of(doc["unanswered"])) == {keys["side"], keys["compacted"]}
    (superseded,) = doc["superseded"]
    assert superseded["idempotency_key"] == keys["lost"]
    assert superseded["superseded_by"]["offset"] == 9

    # --dag: other tests' runs on other DAGs of the shared stack are no business of this range
    clean = bench.audit("--from-offset", "0", "--to-offset", "2", "--dag", DAG)
    bench.assert_no_secret(clean)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    lines = clean.stdout.splitlines()
    assert lines[0] == f"request topic {bench.topics.requests}, offsets 0:[0,2) (DAGs {DAG})"
    assert lines[-1].startswith("audit: 2 requests, 2 answered, 0 without a reply")
    assert lines[-1].endswith(": agrees")


def answered_keys(bench: Bench) -> set[str]:
    """The idempotency keys the reply topic holds an answer for (the latest per key)."""
    found = set()
    for values in reply_values(bench).values():
        for value in values:
            if value:
                reply = json.loads(value)
                if reply.get("idempotency_key"):
                    found.add(reply["idempotency_key"])
    return found
