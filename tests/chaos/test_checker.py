"""The checker on hand-made histories: a clean one passes, and each invariant can fail."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.run_id import run_id_for
from tests.chaos import checker
from tests.chaos.history import History, Message, Run
from tests.chaos.workload import (
    DAG,
    INVALID,
    KIND_HEADER,
    MISSING,
    MISSING_DAG,
    NEW,
    ROUTE,
    TOMBSTONE,
    TRACKED,
)

REQUESTS = "req"
EVENTS = "ev"
REPLIES = "rep"
ROUTES = ("ra", "rb")
SOURCE = "trigger_consumer/source"  # README: the request that made a run


def _request(offset: int, key: str, kind: str = NEW, **fields: Any) -> Message:
    body = {"idempotency_key": key, "dag_id": DAG, "conf": {"id": key}, **fields}
    return Message(REQUESTS, 0, offset, key.encode(), json.dumps(body).encode(), _kind(kind))


def _kind(kind: str) -> dict[str, bytes]:
    return {KIND_HEADER: kind.encode()}


def _reply(
    source: Message,
    status: str,
    key: str | None,
    *,
    route: str = "",
    dag_id: str = DAG,
    code: str | None = None,
    **fields: Any,
) -> Message:
    body = {
        "idempotency_key": key,
        "dag_id": dag_id,
        "status": status,
        "dag_run_id": run_id_for(key) if key and status in ("triggered", "duplicate") else None,
        "error": {"code": code} if code else None,
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        **fields,
    }
    headers = {"route": route.encode()} if route else {}
    return Message(REPLIES, 0, 0, key.encode() if key else None, json.dumps(body).encode(), headers)


def _dead_letter(source: Message) -> Message:
    headers = {
        "source-topic": source.topic.encode(),
        "source-partition": str(source.partition).encode(),
        "source-offset": str(source.offset).encode(),
    }
    return Message("dlq", 0, 0, source.key, source.value, headers)


def _run(key: str, dag_id: str = DAG, state: str = "queued") -> Run:
    return Run(dag_id, run_id_for(key), state, {"id": key})


def _clean() -> History:
    """A history where every invariant holds.

    A new key, its duplicate, a reused key, an invalid message, a tombstone, an event on
    two routes, and a tracked run, each answered as the spec says.
    """
    first = _request(0, "k1")
    again = _request(1, "k1", "duplicate")
    reused = Message(
        REQUESTS,
        0,
        2,
        b"k1",
        json.dumps({"idempotency_key": "k1", "dag_id": DAG}).encode(),
        _kind("reused"),
    )
    broken = Message(REQUESTS, 0, 3, b"x1", b"{not json", _kind(INVALID))
    tombstone = Message(REQUESTS, 1, 0, None, None, _kind(TOMBSTONE))
    event = Message(
        EVENTS, 0, 0, b"e1", json.dumps({"kind": "order", "id": "e1"}).encode(), _kind(ROUTE)
    )
    tracked = _request(4, "t1", TRACKED, track=True)
    replies = [
        _reply(first, "triggered", "k1"),
        _reply(again, "duplicate", "k1"),
        _reply(reused, "rejected", "k1", code="idempotency_key_reused"),
        _reply(broken, "rejected", None, code="invalid_json"),
        _reply(tombstone, "rejected", None, code="invalid_json"),
        _reply(event, "triggered", "ra:e1", route="ra"),
        _reply(event, "triggered", "rb:e1", route="rb"),
        _reply(tracked, "triggered", "t1"),
        _reply(tracked, "completed", "t1", run_state="success"),
    ]
    return History(
        request_topic=REQUESTS,
        event_topic=EVENTS,
        routes=ROUTES,
        requests=[first, again, reused, broken, tombstone, event, tracked],
        replies=replies,
        dead_letters=[_dead_letter(m) for m in (reused, broken, tombstone)],
        runs=[_run("k1"), _run("ra:e1"), _run("rb:e1"), _run("t1", state="success")],
        committed={(REQUESTS, 0): 5, (REQUESTS, 1): 1, (EVENTS, 0): 1},
        ends={(REQUESTS, 0): 5, (REQUESTS, 1): 1, (EVENTS, 0): 1, (EVENTS, 1): 0},
        readiness={"r0": (200, [])},
    )


def _broken_by(invariant: str, history: History) -> list[checker.Violation]:
    return [v for v in checker.check(history) if v.invariant == invariant]


def test_a_clean_history_breaks_nothing() -> None:
    """Every invariant holds on a history of every traffic kind answered as the spec says."""
    assert checker.check(_clean()) == []


def test_the_run_id_rule_is_the_workers() -> None:
    """The checker's own copy of the README's run id rule agrees with the worker's."""
    for key in ["order-42", "order 42/2025", "café", "x~y", "a" * 256, "route:e-1"]:
        assert checker.run_id_of(key) == run_id_for(key)


def test_a_request_without_reply_is_reported() -> None:
    """A committed request with no reply breaks `every committed request answered`."""
    history = _clean()
    history.replies = [
        r for r in history.replies if json.loads(r.value or b"{}")["status"] != "duplicate"
    ]
    (violation,) = _broken_by("every committed request answered", history)
    assert violation.keys == ("k1 (req-0@1)",)


def test_a_route_left_unanswered_is_reported() -> None:
    """An event answered for one route only is reported for the other."""
    history = _clean()
    history.replies = [r for r in history.replies if r.headers.get("route") != b"rb"]
    (violation,) = _broken_by("every committed request answered", history)
    assert violation.keys == ("rb:e1 (ev-0@0/rb)",)


def test_replies_that_disagree_are_reported() -> None:
    """A re-delivered request answered `triggered` then `duplicate` breaks agreement."""
    history = _clean()
    history.replies.append(_reply(history.requests[0], "duplicate", "k1"))
    (violation,) = _broken_by("replies to one request agree", history)
    assert violation.keys == ("k1 (req-0@0)",)


def test_the_maker_answered_duplicate_is_reported() -> None:
    """The request that made the run answered only `duplicate` breaks the maker invariant."""
    history = _clean()
    history.replies[0] = _reply(history.requests[0], "duplicate", "k1")
    (violation,) = _broken_by("the request that made a run is answered triggered", history)
    assert violation.keys == ("k1 (req-0@0)",)


def test_the_maker_is_the_request_its_runs_conf_names() -> None:
    """The run names its duplicate (req-0@1) as its maker: that one must be `triggered`."""
    history = _clean()
    source = {"topic": REQUESTS, "partition": 0, "offset": 1}
    history.runs[0] = Run(DAG, run_id_for("k1"), "queued", {"id": "k1", SOURCE: source})
    (violation,) = _broken_by("the request that made a run is answered triggered", history)
    assert violation.keys == ("k1 (req-0@1)",)
    history.replies[0] = _reply(history.requests[0], "duplicate", "k1")
    history.replies[1] = _reply(history.requests[1], "triggered", "k1")
    assert checker.check(history) == []


@pytest.mark.parametrize("dag_id", ["devstack_plain", DAG])
def test_a_second_run_or_a_foreign_run_is_reported(dag_id: str) -> None:
    """A second DAG holding a key's run, or a run with the reused body's conf: one run per key."""
    history = _clean()
    if dag_id == DAG:
        history.runs[0] = Run(DAG, run_id_for("k1"), "queued", {})  # the reused body's conf
    else:
        history.runs.append(_run("k1", dag_id))
    (violation,) = _broken_by("one run per key", history)
    assert violation.keys[0].startswith("k1:")


def test_a_run_for_an_invalid_or_aborted_request_is_reported() -> None:
    """A run for a key only an invalid or aborted record carried, or for an unknown DAG."""
    history = _clean()
    invalid = Message(
        REQUESTS,
        0,
        5,
        b"x2",
        json.dumps({"idempotency_key": "x2", "dag_id": DAG, "dagid": "typo"}).encode(),
        _kind(INVALID),
    )
    history.requests.append(invalid)
    history.replies.append(_reply(invalid, "rejected", "x2", code="unknown_fields"))
    history.dead_letters.append(_dead_letter(invalid))
    history.aborted.append(_request(9, "a1", "aborted"))
    unknown = _request(6, "m1", MISSING, dag_id=MISSING_DAG)
    history.requests.append(unknown)
    history.replies.append(_reply(unknown, "error", "m1", code="dag_not_found"))
    history.dead_letters.append(_dead_letter(unknown))
    history.runs += [_run("x2"), _run("a1"), _run("m1", MISSING_DAG)]
    history.ends[(REQUESTS, 0)] = history.committed[(REQUESTS, 0)] = 7
    (violation,) = _broken_by("no run for a rejected or aborted request", history)
    assert violation.keys == ("a1", "m1", "x2")


def test_a_triggered_reply_without_run_is_reported() -> None:
    """A `triggered` reply naming a run Airflow does not have is reported."""
    history = _clean()
    history.runs = [r for r in history.runs if r.run_id != run_id_for("ra:e1")]
    (violation,) = _broken_by("a run for every triggered", history)
    assert violation.keys == ("ra:e1 (triggered)",)


def test_a_missing_or_doubled_completed_reply_is_reported() -> None:
    """A tracked run that ended with no `completed`, or with two, is reported."""
    history = _clean()
    completed = history.replies.pop()
    assert _broken_by("completed once per tracked run", history)[0].keys == (
        "t1: run success, no completed reply",
    )
    history.replies += [completed, completed]
    assert _broken_by("completed once per tracked run", history)[0].keys == (
        "t1: 2 completed replies from ['?', '?']",
    )


def test_a_completed_reply_sent_again_after_its_sender_was_killed_is_the_named_limit() -> None:
    """A killed sender's `completed` (built before the kill) plus its successor's is allowed.

    Two from living processes, two from one process, or one built after its sender's kill
    are still violations.
    """
    history = _clean()
    history.replies.pop()
    tracked = history.requests[-1]
    kill = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def sent_by(worker: str, built: datetime) -> Message:
        return _reply(
            tracked,
            "completed",
            "t1",
            run_state="success",
            worker=f"{worker}/1.0",
            processed_at=built.isoformat(),
        )

    def broken(*replies: Message, killed: dict[int, datetime]) -> bool:
        case = dataclasses.replace(history, replies=[*history.replies, *replies], killed=killed)
        return bool(_broken_by("completed once per tracked run", case))

    before, after = kill - timedelta(seconds=1), kill + timedelta(seconds=5)
    assert not broken(sent_by("vm-41", before), sent_by("vm-52", after), killed={41: kill})
    assert broken(sent_by("vm-41", before), sent_by("vm-52", after), killed={})
    assert broken(sent_by("vm-41", before), sent_by("vm-41", before), killed={41: kill})
    assert broken(sent_by("vm-41", after), sent_by("vm-52", after), killed={41: kill})


def test_a_missing_dead_letter_is_reported() -> None:
    """A `rejected` answer without a dead letter at its position is reported."""
    history = _clean()
    history.dead_letters.pop()
    (violation,) = _broken_by("every rejected or error answer dead-lettered", history)
    assert violation.keys == ("None (req-1@0)",)


def test_lag_unready_replicas_and_deaths_are_reported() -> None:
    """An uncommitted offset, an unready replica and a replica's own exit are each reported."""
    history = _clean()
    history.committed[(REQUESTS, 1)] = 0
    history.readiness["r1"] = (503, ["airflow unavailable"])
    history.deaths.append("r1 exit 1 at +30s: Traceback")
    assert _broken_by("lag 0 at the end", history)[0].keys == ("req-1: committed 0 of 1",)
    assert _broken_by("every replica ready at the end", history)[0].keys == (
        "r1: 503 ['airflow unavailable']",
    )
    assert _broken_by("no replica died of its own accord", history)[0].keys == (
        "r1 exit 1 at +30s: Traceback",
    )
