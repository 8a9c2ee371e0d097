"""Replay of dead-lettered route events end to end: back to their route topic, through the route."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    existing_runs,
    produce,
    read_all,
    request,
    running,
)

ROOT = Path(__file__).resolve().parents[2]
DAG = "devstack_paused"  # runs are created (not executed): enough to prove the trigger
NOT_ALLOWING_DAG = "devstack_plain"  # an allow-list that leaves DAG out: dead-letters first


def _routed_worker(
    make_worker: Callable[..., WorkerProcess], routes: list[dict[str, Any]], allowlist: str
) -> WorkerProcess:
    return make_worker(routes=json.dumps(routes), dag_allowlist=allowlist)


def _stop(worker: WorkerProcess) -> None:
    """SIGTERM: the worker commits what it answered, so its successor does not read it again."""
    assert worker.terminate() == 0, worker.tail()


def _replay(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``trigger-consumer replay`` (DLQ → each record's source topic) with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "consumer", "replay"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def _answers(kafka: KafkaCluster, topics: Topics, at_least: int) -> list[tuple[Any, ...]]:
    """(idempotency key, status, error code) of every reply, in reply-topic order."""
    records = read_all(kafka.bootstrap_servers, topics.replies, at_least=at_least)
    answers = []
    for record in records:
        reply = json.loads(record.value)
        code = reply["error"]["code"] if reply["error"] else None
        answers.append((reply["idempotency_key"], reply["status"], code))
    return answers


def _route(events: str) -> tuple[list[dict[str, Any]], str]:
    """One route on ``events`` (named uniquely: Airflow keeps earlier runs) and its name."""
    name = f"replayed-{unique_name('r')[-8:]}"
    route = {"name": name, "topics": [events], "dag_id": DAG, "idempotency_key": "{id}"}
    return [route], name


def test_a_dead_lettered_route_event_is_replayed_through_its_route(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_topic: Callable[..., str],
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """A route event dead-lettered (DAG not allowed yet), replayed, is triggered by its route."""
    events = new_topic(prefix="ev-replay")
    routes, name = _route(events)
    event_id = unique_name("e")
    key = f"{name}:{event_id}"
    with running(_routed_worker(make_worker, routes, NOT_ALLOWING_DAG)) as first:
        produce(
            kafka.bootstrap_servers, events, [(None, json.dumps({"id": event_id}).encode(), [])]
        )
        (letter,) = read_all(kafka.bootstrap_servers, topics.dlq, at_least=1)
        _stop(first)
    headers = dict(letter.headers)
    assert (headers["error-code"], headers["source-topic"]) == (b"dag_not_allowed", events.encode())
    fixed = _routed_worker(make_worker, routes, "devstack_*")
    with running(fixed):
        result = _replay(fixed.env)  # the worker's own configuration: its routes
        assert result.returncode == 0, result.stderr
        answers = _answers(kafka, topics, at_least=2)
    assert answers == [(key, "rejected", "dag_not_allowed"), (key, "triggered", None)]
    assert existing_runs(airflow3, DAG, [key]) == {key}
    summary = result.stderr.strip().splitlines()[-1]
    assert f"replayed 1; by topic: {events}=1" in summary


def test_a_mixed_dead_letter_topic_is_replayed_in_one_call(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_topic: Callable[..., str],
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """A DLQ holding a request and a route event: one replay triggers both, each by its path."""
    events = new_topic(prefix="ev-replay-mixed")
    routes, name = _route(events)
    event_id = unique_name("e")
    routed_key = f"{name}:{event_id}"
    plain_key = unique_name("plain")
    with running(_routed_worker(make_worker, routes, NOT_ALLOWING_DAG)) as first:
        produce(
            kafka.bootstrap_servers, events, [(None, json.dumps({"id": event_id}).encode(), [])]
        )
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [(plain_key.encode(), request(plain_key, DAG), [])],
        )
        letters = read_all(kafka.bootstrap_servers, topics.dlq, at_least=2)
        _stop(first)
    assert sorted(dict(letter.headers)["source-topic"].decode() for letter in letters) == sorted(
        [events, topics.requests]
    )
    fixed = _routed_worker(make_worker, routes, "devstack_*")
    with running(fixed):
        result = _replay(fixed.env)
        assert result.returncode == 0, result.stderr
        answers = _answers(kafka, topics, at_least=4)
    by_key: dict[str, list[tuple[str, str | None]]] = {}
    for key, status, code in answers:
        by_key.setdefault(key, []).append((status, code))
    assert by_key == {
        routed_key: [("rejected", "dag_not_allowed"), ("triggered", None)],
        plain_key: [("rejected", "dag_not_allowed"), ("triggered", None)],
    }
    assert existing_runs(airflow3, DAG, [routed_key, plain_key]) == {routed_key, plain_key}
    summary = result.stderr.strip().splitlines()[-1]
    by_topic = ", ".join(f"{topic}=1" for topic in sorted([events, topics.requests]))
    assert f"replayed 2; by topic: {by_topic}" in summary
