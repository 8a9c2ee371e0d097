"""reply: an Outcome → the reply record, every field present, keyed by idempotency key."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from consumer.contract import Reply, Status, TriggerRequest
from consumer.errors import ErrorCode, Rejected
from consumer.outcome import Outcome
from consumer.pipeline.reply import build_reply, encode_reply, reply_record
from consumer.record import InboundRecord

RECORD = InboundRecord(
    topic="requests",
    partition=0,
    offset=7,
    timestamp_ms=1_735_689_600_000,
    key=b"producer-key",
    value=b"{}",
    headers=(("correlation-id", b"hdr"),),
)
REQUEST = TriggerRequest(idempotency_key="k-1", dag_id="etl_daily", correlation_id="c-1")
PROCESSED = datetime(2025, 1, 1, 0, 0, 5, tzinfo=UTC)
REPLY_FIELDS = [
    "schema_version",
    "idempotency_key",
    "correlation_id",
    "dag_id",
    "status",
    "dag_run_id",
    "run_state",
    "logical_date",
    "run_url",
    "error",
    "source",
    "attempts",
    "processed_at",
    "worker",
]


@dataclass(frozen=True)
class Run:
    """A value shaped like airflow.runs.DagRun."""

    dag_run_id: str = "kafka__k-1"
    state: str = "queued"
    logical_date: datetime | None = datetime(2025, 1, 1, tzinfo=UTC)
    run_url: str = "http://airflow/run"


def _triggered() -> Outcome:
    return replace(Outcome.triggered(RECORD, REQUEST, Run(), attempts=1), processed_at=PROCESSED)


def test_triggered_reply_has_every_field_in_order() -> None:
    """A triggered reply's JSON holds every contract field, in model order."""
    body = json.loads(
        reply_record(
            _triggered(), request_key=RECORD.key, default_topic="replies", worker="w/1"
        ).value
        or b""
    )
    assert list(body) == REPLY_FIELDS
    assert body == {
        "schema_version": 1,
        "idempotency_key": "k-1",
        "correlation_id": "c-1",
        "dag_id": "etl_daily",
        "status": "triggered",
        "dag_run_id": "kafka__k-1",
        "run_state": "queued",
        "logical_date": "2025-01-01T00:00:00Z",
        "run_url": "http://airflow/run",
        "error": None,
        "source": {
            "topic": "requests",
            "partition": 0,
            "offset": 7,
            "timestamp": "2025-01-01T00:00:00Z",
        },
        "attempts": 1,
        "processed_at": "2025-01-01T00:00:05Z",
        "worker": "w/1",
    }


def test_unreadable_request_reply_has_nulls() -> None:
    """A reply to a message that could not be read keeps every field, null where unknown."""
    outcome = Outcome.rejected(
        InboundRecord("requests", 1, 2, None, None, b"\xff"),
        Rejected(ErrorCode.INVALID_ENCODING, "not UTF-8", {"position": 0}),
    )
    body = json.loads(encode_reply(build_reply(outcome, worker="w")))
    assert list(body) == REPLY_FIELDS
    assert body["status"] == "rejected"
    assert body["error"] == {
        "code": "invalid_encoding",
        "message": "not UTF-8",
        "details": {"position": 0},
    }
    for field in ("idempotency_key", "correlation_id", "dag_id", "dag_run_id", "run_state"):
        assert body[field] is None
    assert body["source"]["timestamp"] is None


def test_reply_record_is_keyed_by_idempotency_key_with_correlation_header() -> None:
    """The reply's key is the idempotency key and it carries the correlation-id header."""
    record = reply_record(_triggered(), request_key=RECORD.key, default_topic="replies", worker="w")
    assert record.topic == "replies"
    assert record.key == b"k-1"
    assert record.headers == (("correlation-id", b"c-1"),)


def test_reply_goes_to_the_requested_topic() -> None:
    """A request's allowed reply_topic replaces the default topic."""
    request = TriggerRequest(idempotency_key="k", dag_id="d", reply_topic="team-replies")
    outcome = Outcome.triggered(RECORD, request, Run(), attempts=1)
    assert (
        reply_record(outcome, request_key=RECORD.key, default_topic="replies", worker="w").topic
        == "team-replies"
    )


def test_unknown_key_falls_back_to_record_key() -> None:
    """Without a readable idempotency key the reply keeps the request record's key."""
    outcome = Outcome.rejected(RECORD, Rejected(ErrorCode.INVALID_JSON, "no"))
    record = reply_record(outcome, request_key=RECORD.key, default_topic="replies", worker="w")
    assert record.key == b"producer-key"
    assert record.headers == (("correlation-id", b"hdr"),)
    bare = InboundRecord("requests", 0, 0, None, None, b"x")
    assert (
        reply_record(
            Outcome.rejected(bare, Rejected(ErrorCode.INVALID_JSON, "no")),
            request_key=bare.key,
            default_topic="r",
            worker="w",
        ).headers
        == ()
    )


def test_encoding_is_stable_and_compact() -> None:
    """The same outcome always encodes to the same compact UTF-8 bytes."""
    first = encode_reply(build_reply(_triggered(), worker="w"))
    assert first == encode_reply(build_reply(_triggered(), worker="w"))
    assert b": " not in first
    assert b", " not in first
    unicode = TriggerRequest(idempotency_key="🎉", dag_id="d")
    encoded = encode_reply(
        build_reply(Outcome.triggered(RECORD, unicode, Run(), attempts=1), worker="w")
    )
    assert "🎉".encode() in encoded


def test_encoded_reply_is_a_valid_reply() -> None:
    """Encoded replies parse back into the Reply model unchanged."""
    reply = build_reply(_triggered(), worker="w")
    assert Reply.model_validate_json(encode_reply(reply)) == reply
    assert reply.status is Status.TRIGGERED
