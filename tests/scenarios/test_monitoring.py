"""Monitoring end to end: a real Prometheus scrapes a real worker through an Airflow outage.

The rules are a test copy of deploy/prometheus/alerts.yaml whose ``for:`` durations are
``FOR`` and Prometheus scrapes and evaluates every second, so a hold of a few seconds moves
the held alert through pending and firing. The outage is an API server of the shared
Airflow 3 of our own (``start_extra_api``), stopped and started with devstack's
``stop_api``/``start_api``: other tests and the nemesis keep the shared API server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from devstack.airflow import AirflowServer
from devstack.procs import free_port
from devstack.prometheus import PrometheusServer, scrape_config
from tests.conftest import KafkaCluster, unique_name
from tests.deploy.monitoring import ALERTS, JOB, metric_names, panel_queries
from tests.scenarios.harness import Topics, WorkerProcess, produce, read_all, request, running
from tests.waiting import wait_until

FOR = "4s"  # every rule's `for:` in the test copy (5m and more in alerts.yaml)
HELD = "TriggerConsumerHeld"
NO_REPLICA_READY = "TriggerConsumerNoReplicaReady"
DAG = "devstack_paused"


def fast_rules(folder: Path) -> Path:
    """alerts.yaml with every ``for:`` set to ``FOR``; expressions and annotations unchanged."""
    document = yaml.safe_load(ALERTS.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    path = folder / "alerts.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def own_api(airflow3: AirflowServer) -> Iterator[AirflowServer]:
    """An Airflow 3 API server of the test's own (shared DB and scheduler) to stop at will."""
    server = airflow3.start_extra_api({}, tie_to_parent=True)
    yield server
    server.stop_api()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], PrometheusServer]]:
    """Start Debian's Prometheus scraping a worker's port with the fast rules; stop it after."""
    started: list[PrometheusServer] = []

    def start(worker_port: int) -> PrometheusServer:
        server = PrometheusServer(tmp_path / "prometheus")
        config = scrape_config(
            [f"127.0.0.1:{worker_port}"], job=JOB, rule_files=[fast_rules(tmp_path)]
        )
        started.append(server)
        server.start(config, tie_to_parent=True)
        return server

    yield start
    for server in started:
        server.stop()


def alert_states(server: PrometheusServer, name: str) -> set[str]:
    """The states (``pending``, ``firing``) of the active alerts called ``name``."""
    alerts: list[dict[str, Any]] = server.api("alerts")["alerts"]
    return {a["state"] for a in alerts if a["labels"]["alertname"] == name}


def firing_held_alert(server: PrometheusServer) -> dict[str, Any] | None:
    """The held alert if it is firing, else None."""
    alerts: list[dict[str, Any]] = server.api("alerts")["alerts"]
    return next(
        (a for a in alerts if a["labels"]["alertname"] == HELD and a["state"] == "firing"), None
    )


def scraped_metadata(server: PrometheusServer) -> set[str]:
    """Metric names whose HELP/TYPE Prometheus read from the scrape (with or without samples)."""
    metadata: dict[str, Any] = server.api("metadata")
    return set(metadata)


def test_held_alert_fires_and_resolves_and_every_panel_has_data(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    own_api: AirflowServer,
    prometheus: Callable[[int], PrometheusServer],
) -> None:
    """Airflow's API stopped: held alert pending → firing → resolved; each panel has a series."""
    port = free_port()
    worker = make_worker(airflow=own_api, airflow_retry_budget="3s", http_port=str(port))
    before = [unique_name("mon") for _ in range(5)]
    during = [unique_name("mon-held") for _ in range(3)]
    with running(worker):
        server = prometheus(port)
        wait_until(
            lambda: server.query(f'up{{job="{JOB}"}} == 1'), timeout=30, what="worker scraped"
        )
        produce(
            kafka.bootstrap_servers,
            topics.requests,
            [(k.encode(), request(k, DAG), []) for k in before]
            + [(before[0].encode(), request(before[0], DAG), [])]  # a duplicate
            + [(b"bad", b"not json", [])],  # rejected: a dead letter
        )
        read_all(kafka.bootstrap_servers, topics.replies, at_least=len(before) + 2)

        own_api.stop_api()
        outage = time.monotonic()
        try:
            produce(
                kafka.bootstrap_servers,
                topics.requests,
                [(k.encode(), request(k, DAG), []) for k in during],
            )
            wait_until(
                lambda: "pending" in alert_states(server, HELD), timeout=90, what="held pending"
            )
            pending = time.monotonic()
            firing = wait_until(
                lambda: firing_held_alert(server),
                timeout=30,
                what="held alert firing",
            )
            wait_until(
                lambda: "firing" in alert_states(server, NO_REPLICA_READY),
                timeout=30,
                what="no replica ready firing",
            )
        finally:
            own_api.start_api(tie_to_parent=True)
        read_all(kafka.bootstrap_servers, topics.replies, at_least=len(before) + 2 + len(during))
        wait_until(
            lambda: not alert_states(server, HELD) and not alert_states(server, NO_REPLICA_READY),
            timeout=60,
            what="alerts resolved after recovery",
        )
        resolved = time.monotonic()
        assert firing is not None

        assert firing["labels"] == {
            "alertname": HELD,
            "severity": "warning",
            "job": JOB,
            "instance": f"127.0.0.1:{port}",
            "reason": "airflow",
        }
        assert (
            firing["annotations"]["readme"] == 'README.md, "When Airflow or the store fail: holds"'
        )
        assert pending - outage < 90 and resolved - outage < 150
        exported = scraped_metadata(server)
        empty = [panel for panel, expr in panel_queries() if not server.query(expr)]
        unscraped = {name for _, expr in panel_queries() for name in metric_names(expr)} - exported
    assert unscraped == set(), "panels name metrics this worker does not export"
    assert empty == [], "panels whose query returned no series"
