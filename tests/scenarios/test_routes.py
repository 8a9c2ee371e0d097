"""Routes end to end on the real stack: events as producers emit them → runs → replies."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from consumer.run_id import run_id_for
from devstack.airflow import AirflowServer
from devstack.procs import free_port
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    committed,
    end_offsets,
    produce,
    read_all,
    running,
)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DAG = "devstack_paused"  # the examples' DAGs do not exist on the stack: same routes, this DAG
TRACKED_DAG = "devstack_plain"  # a DAG whose runs succeed within seconds, as tracking tests use
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_KEY = "airflow/dagrun_parent_trace_context"
CE_STRUCTURED = [("content-type", b"application/cloudevents+json")]


def _example_routes(name: str, topic: str, run: str) -> list[dict[str, Any]]:
    """An example's routes, reading ``topic`` and triggering the stack's DAG.

    Route names get the test run's suffix: they start every derived key, and the stack's
    Airflow keeps the runs of earlier test runs.
    """
    routes = tomllib.loads((EXAMPLES / name / "routes.toml").read_text())["routes"]
    return [
        {**route, "name": f"{route['name']}-{run}", "topics": [topic], "dag_id": DAG}
        for route in routes
    ]


def _headers(path: Path) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in json.loads(path.read_text()).items()]


def _run_conf(server: AirflowServer, key: str, dag_id: str = DAG) -> dict[str, Any]:
    url = f"{server.url}/api/{server.api_version}/dags/{dag_id}/dagRuns/{run_id_for(key)}"
    response = server.session().get(url, timeout=30)
    assert response.status_code == 200, response.text
    conf: dict[str, Any] = response.json()["conf"]
    conf.pop("trigger_consumer/source")  # which request made it (consumer/provenance.py)
    return conf


def _replies(kafka: KafkaCluster, topics: Topics, at_least: int) -> list[Any]:
    return read_all(kafka.bootstrap_servers, topics.replies, at_least=at_least)


def _by_route(records: list[Any]) -> dict[str, list[tuple[dict[str, Any], dict[str, bytes]]]]:
    grouped: dict[str, list[tuple[dict[str, Any], dict[str, bytes]]]] = {}
    for record in records:
        headers = dict(record.headers)
        route = headers.get("route", b"").decode()
        grouped.setdefault(route, []).append((json.loads(record.value), headers))
    return grouped


def _worker(
    make_worker: Callable[..., WorkerProcess], routes: list[dict[str, Any]], **extra: str
) -> WorkerProcess:
    return make_worker(routes=json.dumps(routes), **extra)


def test_every_example_triggers_its_run_with_the_expected_conf_and_reply(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_topic: Callable[..., str],
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """S3, GCS, Debezium, both CloudEvent modes and an app event each make one run and reply."""
    names = ["s3", "gcs", "debezium", "cloudevents", "app"]
    topic = {name: new_topic(prefix=f"ev-{name}") for name in names}
    run = unique_name("r")[-8:]
    routes = [route for name in names for route in _example_routes(name, topic[name], run)]
    ce = EXAMPLES / "cloudevents"
    # a logical date of its own: the stack's DAG keeps earlier runs, which hold theirs
    app_event = json.loads((EXAMPLES / "app/event.json").read_text())
    day = date(1990, 1, 1) + timedelta(days=uuid.uuid4().int % 36500)
    app_event["partition_date"] = day.isoformat()
    events = [
        (topic["s3"], (EXAMPLES / "s3/event.json").read_bytes(), []),
        (
            topic["gcs"],
            (EXAMPLES / "gcs/event.json").read_bytes(),
            _headers(EXAMPLES / "gcs/headers.json"),
        ),
        (topic["debezium"], (EXAMPLES / "debezium/event.json").read_bytes(), []),
        (
            topic["cloudevents"],
            (ce / "binary-data.json").read_bytes(),
            _headers(ce / "binary-headers.json"),
        ),
        (topic["cloudevents"], (ce / "structured.json").read_bytes(), CE_STRUCTURED),
        (topic["app"], json.dumps(app_event).encode(), []),
    ]
    with running(_worker(make_worker, routes)):
        for name, value, headers in events:
            produce(kafka.bootstrap_servers, name, [(None, value, headers)])
        replies = _replies(kafka, topics, at_least=len(events))
    grouped = {k.removesuffix(f"-{run}"): v for k, v in _by_route(replies).items()}
    assert sorted(grouped) == sorted(
        [
            "s3-object-created",
            "gcs-object-finalized",
            "order-inserted",
            "invoice-issued",
            "file-landed",
        ]
    )
    statuses = {route: [reply["status"] for reply, _ in got] for route, got in grouped.items()}
    assert all(set(s) == {"triggered"} for s in statuses.values()), statuses
    ((debezium, _),) = grouped["order-inserted"]
    assert debezium["idempotency_key"] == f"order-inserted-{run}:inventory.orders/10042"
    assert _run_conf(airflow3, debezium["idempotency_key"]) == {
        "order_id": 10042,
        "customer_id": 1001,
        "amount": "129.90",
        "committed_at_ms": 1710408413000,
    }
    ((s3, _),) = grouped["s3-object-created"]
    assert _run_conf(airflow3, s3["idempotency_key"])["key"] == "sales/2025/03/14/orders.parquet"
    ((gcs, _),) = grouped["gcs-object-finalized"]
    assert _run_conf(airflow3, gcs["idempotency_key"])["size_bytes"] == 52428800
    ((app, _),) = grouped["file-landed"]
    assert app["logical_date"].startswith(f"{day.isoformat()}T00:00:00")
    assert _run_conf(airflow3, app["idempotency_key"])["row_count"] == 218000
    invoices = {
        reply["idempotency_key"]: (reply, headers) for reply, headers in grouped["invoice-issued"]
    }
    binary_key = (
        f"invoice-issued-{run}://billing.acme.example/invoices#7f0c2b6e-2f43-4b8f-9d39-5b1b8f0e6a11"
    )
    _, headers = invoices[binary_key]
    conf = _run_conf(airflow3, binary_key)
    # the CloudEvents distributed-tracing extension reaches the run's conf and the reply
    assert conf[TRACE_KEY] == {"traceparent": TRACEPARENT, "tracestate": "acme=t61rcWkgMzE"}
    assert conf["invoice_id"] == "INV-2025-0042"
    assert headers["traceparent"] == TRACEPARENT.encode()
    assert len(invoices) == 2  # the structured event is its own request


def test_fan_out_unmatched_and_dedup_of_resent_events(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_topic: Callable[..., str],
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """One event on two routes makes two runs; unmatched and failing events are dead-lettered.

    A re-sent event, with a new trace, is a duplicate of each derived request.
    """
    events = new_topic(prefix="ev-fan")
    routes = [
        {
            "name": "first",
            "topics": [events],
            "match": "kind == 'order'",
            "dag_id": DAG,
            "idempotency_key": "{id}",
            "conf": {"id": "id", "route": "'first'"},
        },
        {
            "name": "second",
            "topics": [events],
            "match": "kind == 'order'",
            "dag_id": DAG,
            "idempotency_key": "{id}",
            "conf": {"id": "id", "route": "'second'"},
        },
        {
            "name": "dated",
            "topics": [events],
            "match": "kind == 'dated'",
            "dag_id": DAG,
            "idempotency_key": "{id}",
            "logical_date": "{when}T00:00:00Z",
        },
    ]
    oid = unique_name("o")
    order = json.dumps({"kind": "order", "id": oid}).encode()
    other_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with running(_worker(make_worker, routes)):
        produce(
            kafka.bootstrap_servers,
            events,
            [
                (None, order, [("traceparent", TRACEPARENT.encode())]),
                (None, json.dumps({"kind": "refund", "id": "r-1"}).encode(), []),
                (
                    None,
                    json.dumps({"kind": "dated", "id": unique_name("d")}).encode(),
                    [],
                ),  # no "when"
            ],
        )
        first = _replies(kafka, topics, at_least=4)
        produce(
            kafka.bootstrap_servers,
            events,
            [(None, order, [("traceparent", other_trace.encode())])],
        )
        replies = _replies(kafka, topics, at_least=6)
        dlq = read_all(kafka.bootstrap_servers, topics.dlq, at_least=2)
    grouped = _by_route(replies)
    assert [r["status"] for r, _ in grouped["first"]] == ["triggered", "duplicate"]
    assert [r["status"] for r, _ in grouped["second"]] == ["triggered", "duplicate"]
    assert _run_conf(airflow3, f"first:{oid}") == {
        "id": oid,
        "route": "first",
        TRACE_KEY: {"traceparent": TRACEPARENT},
    }
    assert _run_conf(airflow3, f"second:{oid}")["route"] == "second"
    ((unmatched, _),) = grouped[""]
    assert unmatched["error"]["code"] == "no_route_matched"
    ((failed, failed_headers),) = grouped["dated"]
    assert failed["error"]["code"] == "route_expression_failed"
    assert failed["error"]["details"] == {
        "route": "dated",
        "field": "logical_date",
        "reason": "{when} is null for this event",
    }
    assert failed_headers["route"] == b"dated"
    codes = sorted(dict(r.headers)["error-code"].decode() for r in dlq)
    assert codes == ["no_route_matched", "route_expression_failed"]
    assert len(first) == 4


def test_a_broken_route_is_a_start_up_error_naming_route_and_field(tmp_path: Path) -> None:
    """A bad JMESPath expression in [[routes]] stops `run` with exit 2 before any connection."""
    config = tmp_path / "worker.toml"
    config.write_text(
        'dag_allowlist = ["*"]\n[[routes]]\nname = "broken"\ntopics = ["t"]\n'
        'match = "Records[0.eventName"\ndag_id = "d"\nidempotency_key = "{id}"\n'
    )
    env = {"PATH": "/usr/bin:/bin", "TRIGGER_CONSUMER_CONFIG_FILE": str(config)}
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert "route 'broken': match: bad JMESPath expression" in result.stderr


@pytest.mark.parametrize("trace_context", ["true", "false"])
def test_completed_reply_of_a_tracked_route_request_names_the_route_and_carries_the_trace(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    new_topic: Callable[..., str],
    make_worker: Callable[..., WorkerProcess],
    *,
    trace_context: str,
) -> None:
    """A tracked route's `completed` reply has the first reply's route and trace headers.

    The trace comes from the CloudEvent's extension, not from a header, so the completed
    reply can only have it from the store; with trace context off neither reply has it.
    """
    events = new_topic(prefix="ev-track")
    name = f"tracked-{unique_name('r')[-8:]}"
    routes = [{"name": name, "topics": [events], "dag_id": TRACKED_DAG, "track": True}]
    event = {
        "specversion": "1.0",
        "id": unique_name("ce"),
        "source": "//tests.example/tracked",
        "type": "com.example.done",
        "traceparent": TRACEPARENT,
        "tracestate": "acme=t61rcWkgMzE",
        "data": {"n": 1},
    }
    with running(
        _worker(make_worker, routes, track_poll_interval="1s", trace_context=trace_context)
    ):
        produce(
            kafka.bootstrap_servers, events, [(None, json.dumps(event).encode(), CE_STRUCTURED)]
        )
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=2, timeout=240)
    ((first, first_headers), (completed, completed_headers)) = _by_route(replies)[name]
    assert (first["status"], completed["status"]) == ("triggered", "completed")
    assert (completed["run_state"], completed["error"]) == ("success", None)
    assert completed["idempotency_key"] == first["idempotency_key"]
    assert completed["source"] == first["source"]
    traced = {"traceparent": TRACEPARENT.encode(), "tracestate": b"acme=t61rcWkgMzE"}
    expected = {"route": name.encode(), **(traced if trace_context == "true" else {})}
    for headers in (first_headers, completed_headers):
        assert {k: v for k, v in headers.items() if k in ("route", *traced)} == expected
    conf = _run_conf(airflow3, first["idempotency_key"], TRACKED_DAG)
    assert (TRACE_KEY in conf) is (trace_context == "true")


def test_debezium_deletes_and_their_tombstones_are_skipped_not_dead_lettered(
    kafka: KafkaCluster,
    topics: Topics,
    new_topic: Callable[..., str],
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """A delete (unmatched, ignored) and its tombstone derive nothing; a create is triggered.

    Debezium writes a delete event and then a tombstone (same key, null value); before, every
    tombstone was rejected ``invalid_json`` and dead-lettered even with ``unmatched = ignore``.
    """
    changes = new_topic(prefix="cdc")
    routes = [
        {
            "name": "created",
            "topics": [changes],
            "match": "op == 'c'",
            "dag_id": DAG,
            "idempotency_key": "{after.id}",
        }
    ]
    row = unique_name("row")
    port = free_port()
    worker = _worker(
        make_worker,
        routes,
        route_topics=json.dumps({changes: {"unmatched": "ignore"}}),
        http_port=str(port),
    )
    with running(worker):
        produce(
            kafka.bootstrap_servers,
            changes,
            [
                (row.encode(), json.dumps({"op": "d", "before": {"id": row}}).encode(), []),
                (row.encode(), None, []),
                (row.encode(), json.dumps({"op": "c", "after": {"id": row}}).encode(), []),
            ],
        )
        replies = _replies(kafka, topics, at_least=1)
        wait_until(
            lambda: committed(kafka.bootstrap_servers, topics.group, changes) == {0: 3},
            timeout=60,
            what="the change topic committed to its end",
        )
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert [
        (json.loads(r.value)["status"], json.loads(r.value)["idempotency_key"]) for r in replies
    ] == [("triggered", f"created:{row}")]
    assert sum(end_offsets(kafka.bootstrap_servers, topics.dlq).values()) == 0
    assert f'action="tombstone",topic="{changes}"}} 1.0' in metrics
    assert f'action="ignored",topic="{changes}"}} 1.0' in metrics
