"""Reading requests, replies and dead letters from records: lenient, never raising (pure)."""

from __future__ import annotations

import json

import pytest

from consumer.audit.history import (
    Answer,
    DeadLetter,
    Request,
    answer_of,
    dead_letter_of,
    request_of,
)
from consumer.record import Headers, InboundRecord


def record(value: bytes | None, headers: Headers = (), topic: str = "t") -> InboundRecord:
    """A record at t/1@7."""
    return InboundRecord(topic, 1, 7, 1_000, b"key", value, headers)


def test_a_request_is_read_from_its_json_value() -> None:
    """Key, DAG and reply topic come from the value; the place and time from the record."""
    value = {"idempotency_key": "k", "dag_id": "d", "reply_topic": "r", "conf": {}}
    assert request_of(record(json.dumps(value).encode())) == Request(
        ("t", 1, 7), 1_000, "k", "d", "r"
    )


@pytest.mark.parametrize(
    "value",
    [None, b"", b"{not json", b"[1]", b'{"idempotency_key": 5, "dag_id": ""}', b"\xff"],
    ids=["tombstone", "empty", "broken", "array", "wrong-types", "not-utf8"],
)
def test_an_unreadable_request_keeps_its_place(value: bytes | None) -> None:
    """A value that is not a request object gives None fields, never an exception."""
    assert request_of(record(value)) == Request(("t", 1, 7), 1_000, None, None, None)


def reply(**fields: object) -> bytes:
    """A reply value with a source at requests/0@3."""
    base: dict[str, object] = {
        "schema_version": 1,
        "idempotency_key": "k",
        "dag_id": "d",
        "status": "triggered",
        "dag_run_id": "kafka__k",
        "error": None,
        "source": {"topic": "requests", "partition": 0, "offset": 3, "timestamp": None},
    }
    return json.dumps({**base, **fields}).encode()


def test_a_reply_is_read_leniently() -> None:
    """A reply gives its source, status, key and run; the topic it was read from is kept."""
    assert answer_of(record(reply(), topic="replies")) == Answer(
        ("requests", 0, 3), "triggered", "k", "d", "kafka__k", None, "replies"
    )


def test_an_unknown_status_is_kept_as_written() -> None:
    """A status a later release added (``rerun``, say) is read, not refused."""
    answer = answer_of(record(reply(status="rerun")))
    assert answer is not None
    assert answer.status == "rerun"


def test_a_failed_reply_carries_its_error_code() -> None:
    """``error.code`` of a rejected request is read."""
    value = reply(status="rejected", dag_run_id=None, error={"code": "invalid_json"})
    answer = answer_of(record(value))
    assert answer is not None
    assert (answer.error_code, answer.run) == ("invalid_json", None)


@pytest.mark.parametrize(
    "value",
    [
        b"{}",
        reply(source=None),
        reply(source={"topic": "t", "partition": "0", "offset": 1}),
        reply(status=None),
        b"nope",
    ],
    ids=["empty", "no-source", "string-partition", "no-status", "not-json"],
)
def test_records_that_are_no_reply_are_skipped(value: bytes) -> None:
    """Without a status and a well-formed source a record is no reply."""
    assert answer_of(record(value)) is None


def test_a_dead_letter_is_read_from_its_headers() -> None:
    """The source-* and error-code headers name the request and why it failed."""
    headers: Headers = (
        ("error-code", b"dag_not_found"),
        ("source-topic", b"requests"),
        ("source-partition", b"2"),
        ("source-offset", b"41"),
    )
    assert dead_letter_of(record(b"", headers)) == DeadLetter(("requests", 2, 41), "dag_not_found")


@pytest.mark.parametrize(
    "headers",
    [(), (("source-topic", b"r"), ("source-partition", b"x"), ("source-offset", b"1"))],
    ids=["none", "unreadable-partition"],
)
def test_a_dead_letter_without_readable_source_is_skipped(headers: Headers) -> None:
    """A record whose source headers are missing or unreadable is no dead letter to count."""
    assert dead_letter_of(record(b"", headers)) is None
