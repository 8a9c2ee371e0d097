"""Deliberate re-runs (issue 29) on the real stack: a failed run cleared once, and succeeding.

``devstack_flaky`` fails on its first try and succeeds once cleared: a clear shows as a
second try of its ``flaky`` task, and of ``prepare`` unless ``only_failed``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from consumer.crash import CRASH_EXIT
from consumer.run_id import run_id_for
from devstack.airflow import AirflowServer, wait_for_run
from tests.conftest import KafkaCluster, unique_name
from tests.faults.proxy import FaultProxy
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    committed,
    produce,
    read_all,
    replies_by_key,
    running,
)
from tests.scenarios.harness import request as request_value
from tests.waiting import wait_until

FLAKY = "devstack_flaky"
RERUNS = {"rerun_dag_allowlist": FLAKY, "track_poll_interval": "1s"}


def _replies(kafka: KafkaCluster, topics: Topics, key: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` replies about ``key``, in order, once there are that many."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        records = read_all(kafka.bootstrap_servers, topics.replies, at_least=0, timeout=30)
        found[:] = replies_by_key(records).get(key, [])
        return len(found) >= count

    wait_until(enough, timeout=180, what=f"{count} replies for {key}")
    return found[:count]


def _send(kafka: KafkaCluster, topics: Topics, key: str, **fields: Any) -> None:
    value = request_value(key, fields.pop("dag_id", FLAKY), **fields)
    produce(kafka.bootstrap_servers, topics.requests, [(key.encode(), value, [])])


def _tries(airflow: AirflowServer, key: str) -> dict[str, int]:
    """Each task of the key's run, with its try number (1: never cleared)."""
    url = (
        f"{airflow.url}/api/{airflow.api_version}/dags/{FLAKY}/dagRuns/"
        f"{run_id_for(key)}/taskInstances"
    )
    answer = airflow.session().get(url, timeout=30)
    answer.raise_for_status()
    return {ti["task_id"]: ti["try_number"] for ti in answer.json()["task_instances"]}


def _failed_run(
    kafka: KafkaCluster, topics: Topics, airflow: AirflowServer, key: str
) -> dict[str, Any]:
    """Trigger the key's run (tracked) and wait for its ``triggered`` and ``completed``."""
    _send(kafka, topics, key, track=True)
    first, completed = _replies(kafka, topics, key, 2)
    assert first["status"] == "triggered"
    assert (completed["status"], completed["run_state"]) == ("completed", "failed")
    return first


@pytest.fixture(params=["sqlite", "postgres"])
def store_options(request: pytest.FixtureRequest) -> dict[str, str]:
    """The worker's store: its own SQLite file, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return {"store_url": request.getfixturevalue("new_database")}
    return {}


def test_a_failed_run_is_rerun_once_and_succeeds(
    kafka: KafkaCluster,
    airflow: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    store_options: dict[str, str],
) -> None:
    """Re-run, then the same re-run again (duplicate), a conflict and a refused DAG.

    The ``completed`` reply of the tracked re-run is the cleared run's end (success), not
    the failure it had before.
    """
    options = RERUNS | store_options
    key = unique_name("rerun")
    with running(make_worker(airflow=airflow, **options)):
        first = _failed_run(kafka, topics, airflow, key)
        _send(kafka, topics, key, track=True, rerun={"id": "fix-1"})
        rerun, completed = _replies(kafka, topics, key, 4)[2:]
        assert (rerun["status"], rerun["dag_run_id"]) == ("rerun", first["dag_run_id"])
        assert rerun["run_state"] in {"queued", "running"}
        assert (completed["status"], completed["run_state"]) == ("completed", "success")
        assert _tries(airflow, key) == {"prepare": 2, "flaky": 2}  # every task, once

        _send(kafka, topics, key, rerun={"id": "fix-1"})  # re-sent: not a second clear
        _send(kafka, topics, key, conf={"other": 1}, rerun={"id": "fix-2"})
        _send(kafka, topics, key, dag_id="devstack_plain", rerun={"id": "fix-3"})
        again, conflict, refused = _replies(kafka, topics, key, 7)[4:]
    assert (again["status"], again["run_state"]) == ("duplicate", "success")
    assert conflict["error"]["code"] == "rerun_conflict"
    assert refused["error"]["code"] == "rerun_not_allowed"
    assert _tries(airflow, key) == {"prepare": 2, "flaky": 2}


def test_only_failed_clears_only_the_failed_tasks(
    kafka: KafkaCluster,
    airflow: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """``only_failed``: the failed task runs again, the one that succeeded does not."""
    key = unique_name("only-failed")
    with running(make_worker(airflow=airflow, **RERUNS)):
        _failed_run(kafka, topics, airflow, key)
        _send(kafka, topics, key, rerun={"id": "fix", "only_failed": True})
        rerun = _replies(kafka, topics, key, 3)[2]
    assert rerun["status"] == "rerun"
    assert wait_for_run(airflow, FLAKY, run_id_for(key), timeout=180)["state"] == "success"
    assert _tries(airflow, key) == {"prepare": 1, "flaky": 2}


def test_a_rerun_of_a_key_without_a_run_triggers_it(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """No run yet: ``triggered``; the re-run id is spent on it (the same again: duplicate)."""
    key = unique_name("rerun-first")
    with running(make_worker(**RERUNS)):
        _send(kafka, topics, key, rerun={"id": "r1"})
        _send(kafka, topics, key, rerun={"id": "r1"})
        statuses = [reply["status"] for reply in _replies(kafka, topics, key, 2)]
    assert statuses == ["triggered", "duplicate"]
    assert wait_for_run(airflow3, FLAKY, run_id_for(key), timeout=180)["state"] == "failed"
    assert _tries(airflow3, key) == {"prepare": 1, "flaky": 1}  # never cleared


def test_crash_between_the_clear_and_the_store_write(
    kafka: KafkaCluster,
    airflow: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """Killed right after the clear: the restart answers ``rerun`` and does not clear again."""
    key = unique_name("crash-clear")
    with running(make_worker(airflow=airflow, **RERUNS)):
        _failed_run(kafka, topics, airflow, key)
    _send(kafka, topics, key, rerun={"id": "fix"})
    crashing = make_worker(airflow=airflow, test_crash_at="after_clear", **RERUNS)
    crashing.start()
    assert crashing.wait(timeout=120) == CRASH_EXIT
    with running(make_worker(airflow=airflow, **RERUNS)):
        wait_until(
            lambda: (
                sum(committed(kafka.bootstrap_servers, topics.group, topics.requests).values()) == 2
            ),
            timeout=120,
            what="the re-run committed after the restart",
        )
        replies = _replies(kafka, topics, key, 3)
    assert [reply["status"] for reply in replies] == ["triggered", "completed", "rerun"]
    assert wait_for_run(airflow, FLAKY, run_id_for(key), timeout=180)["state"] == "success"
    assert _tries(airflow, key) == {"prepare": 2, "flaky": 2}  # cleared once, not twice


def test_a_clear_refused_403_is_answered_and_a_re_send_clears_it(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """A user that may trigger but not edit runs: an error for that request, no stop.

    The worker goes on, and once the permission is granted the same re-run re-sent clears
    the run (the refused attempt left nothing that makes it a duplicate).
    """
    proxy = FaultProxy(airflow3.url)
    key = unique_name("clear-403")
    try:
        worker = make_worker(airflow_url=proxy.url, **RERUNS)
        with running(worker):
            _failed_run(kafka, topics, airflow3, key)
            proxy.fail_clears(403)
            _send(kafka, topics, key, rerun={"id": "fix"})
            refused = _replies(kafka, topics, key, 3)[2]
            proxy.heal()
            _send(kafka, topics, key, rerun={"id": "fix"})
            rerun = _replies(kafka, topics, key, 4)[3]
            assert worker.process is not None
            assert worker.process.poll() is None  # still running
    finally:
        proxy.close()
    assert (refused["status"], refused["error"]["code"]) == ("error", "airflow_rejected")
    assert "permission" in refused["error"]["message"]
    assert rerun["status"] == "rerun"
    assert wait_for_run(airflow3, FLAKY, run_id_for(key), timeout=180)["state"] == "success"
    assert _tries(airflow3, key) == {"prepare": 2, "flaky": 2}


def _replay_with_rerun(worker: WorkerProcess, topics: Topics, rerun_id: str) -> str:
    """``replay --from-topic <requests> --rerun ID``: every request again, stamped."""
    command = [sys.executable, "-m", "consumer", "replay", "--from-topic", topics.requests]
    result = subprocess.run(
        [*command, "--rerun", rerun_id],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=worker.env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_a_batch_replay_with_rerun_reprocesses_each_run_once_per_replay_id(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """``replay --rerun R`` re-runs the runs the batch made; the same replay again does not."""
    keys = [unique_name("batch") for _ in range(2)]
    worker = make_worker(**RERUNS)
    with running(worker):
        for key in keys:
            _send(kafka, topics, key)
        for key in keys:
            assert wait_for_run(airflow3, FLAKY, run_id_for(key), timeout=180)["state"] == "failed"
        _replay_with_rerun(worker, topics, "replay-1")
        first = {key: _replies(kafka, topics, key, 2)[1]["status"] for key in keys}
        _replay_with_rerun(worker, topics, "replay-1")  # the first replay again, by mistake
        again = {key: _replies(kafka, topics, key, 4)[3]["status"] for key in keys}
    assert first == dict.fromkeys(keys, "rerun")
    assert again == dict.fromkeys(keys, "duplicate")  # the copies of the first replay too
    for key in keys:
        assert wait_for_run(airflow3, FLAKY, run_id_for(key), timeout=180)["state"] == "success"
        assert _tries(airflow3, key) == {"prepare": 2, "flaky": 2}


def test_a_rerun_across_replicas_of_a_shared_store_clears_once(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    new_database: str,
) -> None:
    """One replica made the run, another re-runs it, a third sees the re-run done.

    Each replica is SIGKILLed when its part is answered, so the next one may answer the
    same records again: every answer to a record must agree with its first.
    """
    options = RERUNS | {"store_url": new_database}
    key = unique_name("replicas")
    with running(make_worker(name="a", **options)):
        _failed_run(kafka, topics, airflow3, key)
    with running(make_worker(name="b", **options)):
        _send(kafka, topics, key, rerun={"id": "fix"})
        _replies(kafka, topics, key, 3)
    with running(make_worker(name="c", **options)):
        _send(kafka, topics, key, rerun={"id": "fix"})
        wait_until(
            lambda: (
                sum(committed(kafka.bootstrap_servers, topics.group, topics.requests).values()) == 3
            ),
            timeout=120,
            what="the three requests committed",
        )
    records = read_all(kafka.bootstrap_servers, topics.replies, at_least=4)
    replies = replies_by_key(records)[key]
    by_offset: dict[int, set[str]] = {}
    for reply in replies:
        by_offset.setdefault(reply["source"]["offset"], set()).add(reply["status"])
    first, rerun, again = sorted(by_offset)
    assert by_offset[first] == {"triggered", "completed"}
    assert (by_offset[rerun], by_offset[again]) == ({"rerun"}, {"duplicate"})
    assert wait_for_run(airflow3, FLAKY, run_id_for(key), timeout=180)["state"] == "success"
    assert _tries(airflow3, key) == {"prepare": 2, "flaky": 2}
