"""Every reply status end to end on real Kafka and Airflow, with dead-letter records checked."""

from __future__ import annotations

import json
from collections.abc import Callable

import requests

from consumer.run_id import run_id_for
from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    all_committed,
    existing_runs,
    produce,
    read_all,
    replies_by_key,
    request,
    running,
)
from tests.waiting import wait_until


def test_every_status_end_to_end(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """triggered, duplicate, rejected and error replies, each with the right code and DLQ record."""
    new, reused, missing, bad_params = (unique_name(k) for k in ("new", "reused", "nodag", "prm"))
    cases: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = [
        (new.encode(), request(new, conf={"n": 1}), [("correlation-id", b"corr-1")]),
        (new.encode(), request(new, conf={"n": 1}), []),  # same request again: duplicate
        (reused.encode(), request(reused), []),
        (reused.encode(), request(reused, note="different"), [("trace", b"\xff\x00")]),
        (b"k", b"{not json", [("x", b"1")]),
        (None, request(unique_name("deny"), dag_id="admin_dag"), []),
        (missing.encode(), request(missing, dag_id="devstack_missing"), []),
        (bad_params.encode(), request(bad_params, dag_id="devstack_params", conf={"n": "x"}), []),
    ]
    produce(kafka.bootstrap_servers, topics.requests, cases)

    with running(make_worker()):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=len(cases))
        dead = read_all(kafka.bootstrap_servers, topics.dlq, at_least=5)

    by_key = replies_by_key(replies)
    assert [r["status"] for r in by_key[new]] == ["triggered", "duplicate"]
    assert by_key[new][0]["correlation_id"] == "corr-1"
    assert by_key[new][1]["attempts"] == 0  # answered from the store, no Airflow call
    assert existing_runs(airflow3, "devstack_paused", [new]) == {new}
    reused_replies = by_key[reused]
    assert sorted(r["status"] for r in reused_replies) == ["rejected", "triggered"]
    codes = {
        r["error"]["code"] for group in by_key.values() for r in group if r["error"] is not None
    }
    assert codes == {
        "idempotency_key_reused",
        "invalid_json",
        "dag_not_allowed",
        "dag_not_found",
        "airflow_rejected",
    }
    assert len(replies) == len(cases)

    # the dead-letter record is the original record, untouched, plus five error headers
    broken = next(r for r in dead if r.value == b"{not json")
    headers = dict(broken.headers)
    assert broken.key == b"k"
    assert headers["x"] == b"1"
    assert headers["error-code"] == b"invalid_json"
    assert headers["source-topic"] == topics.requests.encode()
    assert {"error-message", "source-partition", "source-offset"} <= headers.keys()
    with_binary_header = next(r for r in dead if dict(r.headers).get("trace") == b"\xff\x00")
    assert json.loads(with_binary_header.value)["note"] == "different"
    assert len(dead) == 5


def test_reply_topic_from_request_is_used_when_allowed(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    new_topic: Callable[..., str],
) -> None:
    """A request naming an allowed reply_topic is answered there, not on the default topic."""
    own_topic = new_topic(prefix="own-replies")
    key = unique_name("routed")
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, reply_topic=own_topic), [])],
    )
    with running(make_worker(reply_topic_allowlist=own_topic)):
        (reply,) = read_all(kafka.bootstrap_servers, own_topic, at_least=1)
    assert json.loads(reply.value)["status"] == "triggered"
    assert reply.key == key.encode()


def test_airflow_2_is_driven_through_api_v1(
    kafka: KafkaCluster,
    airflow2: AirflowServer,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """The same worker triggers runs on Airflow 2 (basic auth, /api/v1) and answers duplicates."""
    key = unique_name("af2")
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, dag_id="devstack_plain", note="from kafka"), [])] * 2,
    )
    with running(make_worker(airflow=airflow2)):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=2)
    statuses = [json.loads(r.value)["status"] for r in replies]
    assert statuses == ["triggered", "duplicate"]
    run_url = f"{airflow2.url}/api/v1/dags/devstack_plain/dagRuns/{run_id_for(key)}"
    run = airflow2.session().get(run_url, timeout=30)
    assert run.status_code == requests.codes.ok
    assert run.json()["note"] == "from kafka"


def test_tracked_request_gets_a_completed_reply(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """With track=true a second reply, `completed`, follows when the run ends (success, failed)."""
    ok, failing = unique_name("track-ok"), unique_name("track-fail")
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [
            (ok.encode(), request(ok, dag_id="devstack_plain", track=True), []),
            (failing.encode(), request(failing, dag_id="devstack_fails", track=True), []),
        ],
    )
    with running(make_worker(track_poll_interval="1s")):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=4, timeout=240)
    by_key = replies_by_key(replies)
    assert [r["status"] for r in by_key[ok]] == ["triggered", "completed"]
    assert by_key[ok][1]["run_state"] == "success"
    assert by_key[ok][1]["error"] is None
    assert by_key[ok][1]["source"] == by_key[ok][0]["source"]
    assert [r["status"] for r in by_key[failing]] == ["triggered", "completed"]
    assert by_key[failing][1]["error"]["code"] == "run_failed"
    assert by_key[failing][1]["run_state"] == "failed"


def test_a_full_in_flight_window_keeps_refilling(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    """With two slots the loop is full after every poll: each request still gets one reply.

    The loop waits for room between polls and is woken only once enough slots are free;
    a wake-up lost there would strand the window. Duplicates are answered on the loop's
    thread and new runs after an Airflow call, so slots free out of fetch order.
    """
    keys = [unique_name(f"window-{i}") for i in range(12)]
    first = [(k.encode(), request(k), []) for k in keys]
    again = [(k.encode(), request(k), []) for k in keys]
    produce(kafka.bootstrap_servers, topics.requests, first + again)

    with running(make_worker(max_in_flight="2")):
        replies = read_all(kafka.bootstrap_servers, topics.replies, at_least=2 * len(keys))
        wait_until(
            lambda: all_committed(kafka.bootstrap_servers, topics),
            timeout=60,
            what="every offset committed",
        )

    by_key = replies_by_key(replies)
    assert {k: [r["status"] for r in by_key[k]] for k in keys} == {
        k: ["triggered", "duplicate"] for k in keys
    }
    assert len(replies) == 2 * len(keys)
