"""Operating a running worker: health, readiness, metrics and per-message log context."""

from __future__ import annotations

from collections.abc import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.procs import free_port
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    produce,
    read_all,
    replies_by_key,
    request,
    running,
)
from tests.waiting import wait_until

MESSAGE_KEYS = {"idempotency_key", "dag_id", "topic", "partition", "offset"}


def test_health_readiness_metrics_and_log_context(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """/healthz and /readyz answer 200, /metrics counts the replies, log lines carry the ids."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keys = [unique_name("ops") for _ in range(3)]
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key), []) for key in keys] + [(b"x", b"not json", [])],
    )
    worker = make_worker(http_port=str(port))
    with running(worker):
        read_all(kafka.bootstrap_servers, topics.replies, at_least=4)
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        ready = wait_until(
            lambda: (answer := requests.get(f"{base}/readyz", timeout=10)).ok and answer,
            timeout=30,
            what="/readyz 200",
        )
        assert ready.json() == {"ready": True}
        metrics = wait_until(
            lambda: (
                'status="triggered"' in (text := requests.get(f"{base}/metrics", timeout=10).text)
                and text
            ),
            timeout=30,
            what="triggered requests in /metrics",
        )
    assert 'trigger_consumer_requests_total{code="none",status="triggered"} 3.0' in metrics
    assert 'code="invalid_json",status="rejected"} 1.0' in metrics
    assert "trigger_consumer_end_to_end_seconds_count 4.0" in metrics
    done = [e for e in worker.events() if e.get("event") == "request_done"]
    assert len(done) == 4
    assert all(event.keys() >= MESSAGE_KEYS for event in done)
    assert {e["idempotency_key"] for e in done if e["status"] == "triggered"} == set(keys)


def airflow_calls(metrics: str) -> dict[str, float]:
    """``trigger_consumer_airflow_calls_total`` by purpose, from a ``/metrics`` text."""
    return {
        sample.labels["purpose"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "trigger_consumer_airflow_calls"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_airflow_calls_are_counted_by_purpose_trigger_and_tracking_apart(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """A tracked request's trigger and its completion checks count under their own purposes.

    The tracker has an Airflow client of its own: it detects the API and logs in for itself.
    """
    port = free_port()
    key = unique_name("calls")
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, dag_id="devstack_plain", track=True), [])],
    )
    with running(make_worker(http_port=str(port), track_poll_interval="1s")):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=2, timeout=240)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text

    triggered, completed = replies_by_key(replies)[key]
    assert (triggered["status"], completed["status"]) == ("triggered", "completed")
    counted = airflow_calls(metrics)
    assert counted["trigger"] == triggered["attempts"] + 1  # the POSTs, the paused-flag look-up
    assert counted["tracking"] >= 1  # a list call per poll until the run ended
    assert counted["detect"] == 2  # each client probes /api/v2/version once (Airflow 3)
    assert counted["login"] == 2  # and logs in for its own JWT
