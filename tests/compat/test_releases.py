"""Compatibility smoke: the worker's client and the worker on older Airflow and Kafka releases.

Each class starts one older Airflow (``devstack.matrix``) for its tests alone. Every class
runs the same smoke through the worker's real client: detection accepts the release, a
trigger with conf, note and logical date, a duplicate (409 → the existing run), an unknown
DAG (404), bad params (400), a logical-date clash, a run that ends and is listed as ended
(what tracking reads), the audit's look-up of a run by id; then the worker itself end to
end on a Kafka 3.9 broker.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from structlog.testing import capture_logs

from consumer.airflow import AirflowClient, AirflowConnection
from consumer.airflow.detect import detect_api_version
from consumer.airflow.listing import RunLister
from consumer.errors import AirflowError, ErrorCode
from devstack.airflow import AirflowServer
from devstack.kafka import KafkaBroker
from tests.airflow.conftest import new_run_id
from tests.conftest import unique_name
from tests.scenarios.harness import (
    WorkerProcess,
    produce,
    read_all,
    replies_by_key,
    request,
    running,
    topics_on,
    worker_env,
)
from tests.waiting import wait_until

# setting an Airflow up (install on first use, db migrate, start) is part of a class's first test
pytestmark = [pytest.mark.compat, pytest.mark.timeout(900)]


def unique_logical_date() -> datetime:
    """A past logical date (so the run can execute) that no other test picks."""
    return datetime(2001, 1, 1, tzinfo=UTC) + timedelta(microseconds=time.time_ns() // 1000)


def stored_run(server: AirflowServer, dag_id: str, run_id: str) -> dict[str, Any]:
    """The run as Airflow stores it, read with devstack's own session."""
    url = f"{server.url}/api/{server.api_version}/dags/{dag_id}/dagRuns/{run_id}"
    with server.session() as session:
        answer = session.get(url, timeout=10)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body


class ReleaseSmoke:
    """The smoke every older release runs; a subclass names the release in ``RELEASE``."""

    RELEASE: ClassVar[str]

    def test_detection_finds_the_release_and_accepts_it(
        self, release_airflow: AirflowServer
    ) -> None:
        """Detection names the exact release on its API and logs no untested warning."""
        with requests.Session() as session, capture_logs() as logs:
            found = detect_api_version(session, release_airflow.url, timeout=(5.0, 10.0))
        assert (found.api_version, found.airflow_version) == (
            release_airflow.api_version,
            self.RELEASE,
        )
        assert logs == []

    def test_trigger_with_conf_note_and_logical_date(
        self, release_airflow: AirflowServer, release_client: AirflowClient
    ) -> None:
        """A new run is created with its conf, note and logical date."""
        run_id, when = new_run_id("compat"), unique_logical_date()
        result = release_client.trigger(
            "devstack_params", run_id, {"n": 7, "name": "bob"}, when, "a note"
        )
        assert (result.created, result.dag_run_id, result.attempts) == (True, run_id, 1)
        assert result.logical_date == when
        stored = stored_run(release_airflow, "devstack_params", run_id)
        assert (stored["conf"], stored["note"]) == ({"n": 7, "name": "bob"}, "a note")

    def test_second_trigger_is_the_existing_run(self, release_client: AirflowClient) -> None:
        """The same run id again answers 409, and the client reports the run that exists."""
        run_id = new_run_id("compat")
        first = release_client.trigger("devstack_paused", run_id, {"k": 1})
        again = release_client.trigger("devstack_paused", run_id, {"k": 1})
        assert (first.created, again.created) == (True, False)
        assert (again.dag_run_id, again.attempts) == (run_id, 2)

    def test_unknown_dag_is_dag_not_found(self, release_client: AirflowClient) -> None:
        """A 404 for the DAG gives dag_not_found at once."""
        with pytest.raises(AirflowError) as caught:
            release_client.trigger("no_such_dag_here", new_run_id("compat"))
        assert caught.value.code is ErrorCode.DAG_NOT_FOUND
        assert caught.value.details["status"] == 404

    def test_params_violation_is_airflow_rejected(self, release_client: AirflowClient) -> None:
        """A conf that breaks the DAG's params is refused (400) as airflow_rejected."""
        with pytest.raises(AirflowError) as caught:
            release_client.trigger("devstack_params", new_run_id("compat"), {"n": 1000})
        assert caught.value.code is ErrorCode.AIRFLOW_REJECTED
        assert caught.value.details["status"] in {400, 422}
        assert "Invalid input for param n" in caught.value.details["detail"]

    def test_logical_date_clash_is_logical_date_conflict(
        self, release_client: AirflowClient
    ) -> None:
        """Another run holding the logical date gives logical_date_conflict."""
        when = unique_logical_date()
        release_client.trigger("devstack_paused", new_run_id("compat"), logical_date=when)
        with pytest.raises(AirflowError) as caught:
            release_client.trigger("devstack_paused", new_run_id("compat"), logical_date=when)
        assert caught.value.code is ErrorCode.LOGICAL_DATE_CONFLICT

    def test_a_run_ends_and_is_listed_as_ended(self, release_client: AirflowClient) -> None:
        """A run reaches success, and the listing tracking polls names it among the ended."""
        since = datetime.now(UTC) - timedelta(seconds=5)
        run_id = new_run_id("compat")
        release_client.trigger("devstack_plain", run_id)
        wait_until(
            lambda: (
                (run := release_client.get_run("devstack_plain", run_id)) is not None
                and run.state in {"success", "failed"}
            ),
            timeout=180,
            interval=0.5,
            what="the run to end",
        )
        ended = release_client.ended_runs({"devstack_plain"}, since)
        assert ended is not None
        assert {(run.dag_run_id, run.state) for run in ended.runs} >= {(run_id, "success")}

    def test_the_audit_listing_finds_a_named_run(
        self, release_client: AirflowClient, release_connection: AirflowConnection
    ) -> None:
        """The audit's look-up by run id finds the run, and only it (3.1 has no id filter)."""
        run_id = new_run_id("compat")
        release_client.trigger("devstack_paused", run_id)
        lister = RunLister(release_connection)
        try:
            found = lister.find([("devstack_paused", run_id)])
        finally:
            lister.close()
        assert run_id in {run.dag_run_id for run in found}

    def test_the_worker_end_to_end_on_kafka_3_9(
        self, release_airflow: AirflowServer, kafka3: KafkaBroker, tmp_path: Path
    ) -> None:
        """Through Kafka 3.9: triggered then completed, a duplicate, and dag_not_found."""
        topics = topics_on(kafka3.bootstrap_servers)
        key, missing = unique_name("compat"), unique_name("compat-missing")
        produce(
            kafka3.bootstrap_servers,
            topics.requests,
            [
                (key.encode(), request(key, "devstack_plain", track=True), []),
                (key.encode(), request(key, "devstack_plain", track=True), []),
                (missing.encode(), request(missing, "devstack_missing"), []),
            ],
        )
        env = worker_env(
            bootstrap=kafka3.bootstrap_servers,
            airflow=release_airflow,
            topics=topics,
            store=tmp_path / "store.db",
            extra={"TRIGGER_CONSUMER_TRACK_POLL_INTERVAL": "1s"},
        )
        worker = WorkerProcess(env=env, log=tmp_path / "worker.log")
        with running(worker):
            replies = read_all(kafka3.bootstrap_servers, topics.replies, at_least=4, timeout=240)
        by_key = replies_by_key(replies)
        statuses = {r["status"]: r for r in by_key[key]}
        assert sorted(r["status"] for r in by_key[key]) == ["completed", "duplicate", "triggered"]
        assert statuses["completed"]["run_state"] == "success"
        assert [(r["status"], r["error"]["code"]) for r in by_key[missing]] == [
            ("error", "dag_not_found")
        ]
        events = {event.get("event") for event in worker.events()}
        assert "airflow_release_untested" not in events


class TestAirflow31(ReleaseSmoke):
    """Airflow 3.1 (``/api/v2``)."""

    RELEASE = "3.1.8"


class TestAirflow32(ReleaseSmoke):
    """Airflow 3.2 (``/api/v2``)."""

    RELEASE = "3.2.2"


class TestAirflow210(ReleaseSmoke):
    """Airflow 2.10 (``/api/v1``)."""

    RELEASE = "2.10.5"
