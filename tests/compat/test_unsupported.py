"""A worker pointed at an Airflow older than it supports refuses to start (exit 2, one clear line).

The old Airflow is the fault injector answering ``/api/v1/version`` with ``2.3.0``: no
release that old installs beside Python 3.11, and only its version answer matters here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import KafkaCluster, unique_name
from tests.faults.server import FaultInjector, Reply
from tests.scenarios.harness import WorkerProcess

pytestmark = pytest.mark.compat

EXIT_USAGE = 2


def test_a_worker_refuses_an_airflow_older_than_supported(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """Airflow 2.3.0: exit 2 before joining the group, logging the version and the floor."""
    faults = FaultInjector()
    faults.script("GET", "/api/v1/version", Reply(200, {"version": "2.3.0"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_CONSUMER_")}
    env.update(
        {
            "TRIGGER_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "TRIGGER_CONSUMER_KAFKA_GROUP_ID": unique_name("group"),
            "TRIGGER_CONSUMER_AIRFLOW_URL": faults.url,
            "TRIGGER_CONSUMER_AIRFLOW_USERNAME": "admin",
            "TRIGGER_CONSUMER_AIRFLOW_PASSWORD": "unused",
            "TRIGGER_CONSUMER_DAG_ALLOWLIST": "devstack_*",
            "TRIGGER_CONSUMER_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "TRIGGER_CONSUMER_LOG_FORMAT": "json",
            "TRIGGER_CONSUMER_HTTP_PORT": "0",
        }
    )
    worker = WorkerProcess(env=env, log=tmp_path / "worker.log")
    try:
        worker.launch()
        assert worker.wait(timeout=60) == EXIT_USAGE, worker.tail()
    finally:
        worker.close()
        faults.close()
    events = worker.events()
    errors = [e["error"] for e in events if e.get("event") == "configuration_error"]
    assert len(errors) == 1, worker.tail()
    assert f"Airflow 2.3.0 at {faults.url} is not supported" in errors[0]
    assert "2.6.0 or later on /api/v1" in errors[0]
    assert not [e for e in events if e.get("event") == "partitions_assigned"]
    assert faults.seen("POST") == []  # nothing was triggered, nobody logged in
