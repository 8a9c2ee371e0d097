"""diagnose: every check in order against the real stack, with secrets masked."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from consumer.diagnostics import diagnose
from consumer.settings import load_settings
from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster, unique_name

TIMEOUT = 3.0


def test_every_check_passes_in_order_on_the_stack(
    kafka: KafkaCluster, airflow3: AirflowServer, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """With fresh topics, Airflow 3's DAGs and a temporary store every check passes, in order."""
    described = airflow3.describe()
    settings = load_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_group_id=unique_name("doctor-group"),
        request_topic=new_topic(partitions=3, prefix="doctor-requests"),
        reply_topic=new_topic(prefix="doctor-replies"),
        dlq_topic=new_topic(prefix="doctor-dlq"),
        airflow_url=airflow3.url,
        airflow_username=described["username"],
        airflow_password=SecretStr(described["password"]),
        dag_allowlist=("devstack_plain", "devstack_param*"),
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
    )
    results = diagnose(settings, timeout=TIMEOUT)
    assert [result.name for result in results] == [
        "kafka",
        "request topic",
        "reply topic",
        "DLQ topic",
        "consumer group",
        "airflow",
        "airflow credentials",
        "DAG allow-list 'devstack_plain'",
        "DAG allow-list 'devstack_param*'",
        "paused DAGs",
        "store",
        "deferred",
    ]
    assert [result.name for result in results if not result.ok] == []


def test_a_secret_in_a_detail_is_masked(
    kafka: KafkaCluster, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A secret that ends up in a check's text (here a topic named like it) is shown as ***."""
    topic = new_topic(prefix="doctor-secret")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        request_topic=topic,
        airflow_url=f"http://127.0.0.1:{port}",
        airflow_token=SecretStr(topic),
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
    )
    results = {result.name: result for result in diagnose(settings, timeout=TIMEOUT)}
    assert results["request topic"].detail == "*** exists with 1 partition(s)"
    assert all(topic not in f"{result.detail}{result.remedy}" for result in results.values())


def test_a_password_in_the_store_urls_query_string_never_shows(
    kafka: KafkaCluster, new_topic: Callable[..., str], new_database: str
) -> None:
    """``STORE_URL=postgresql://…?password=…``: no check's text or repr carries the password."""
    secret = "s3cret-" + unique_name("pw")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        request_topic=new_topic(prefix="doctor-store-url"),
        airflow_url=f"http://127.0.0.1:{port}",
        store_url=f"{new_database}?sslmode=disable&password={secret}",
    )
    results = {result.name: result for result in diagnose(settings, timeout=TIMEOUT)}
    assert results["store"].ok, results["store"]
    assert "sslmode=disable&password=*** is writable" in results["store"].detail
    assert secret not in repr(list(results.values()))
    assert secret not in repr(settings)
