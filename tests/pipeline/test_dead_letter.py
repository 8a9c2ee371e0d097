"""dead_letter: the original record unchanged plus the five error and source headers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from consumer.contract import TriggerRequest
from consumer.errors import AirflowError, ErrorCode, Rejected
from consumer.outcome import Outcome
from consumer.pipeline.dead_letter import (
    KEY_NULL_HEADER,
    KEY_OMITTED_HEADER,
    Omit,
    dead_letter_record,
    needs_dead_letter,
)
from consumer.record import InboundRecord


@dataclass(frozen=True)
class Run:
    """A value shaped like airflow.runs.DagRun."""

    dag_run_id: str = "kafka__k"
    state: str = "queued"
    logical_date: None = None
    run_url: str = "u"


RECORD = InboundRecord(
    topic="requests",
    partition=4,
    offset=99,
    timestamp_ms=0,
    key=b"\x00raw key\xff",
    value=b'{"idempotency_key": "k", "dagid": "x"}',
    headers=(("correlation-id", b"c"), ("trace", b"\xff\x00"), ("correlation-id", b"d")),
)


def test_original_record_travels_unchanged_plus_five_headers() -> None:
    """Key, value bytes and headers are kept as they were; five headers follow them."""
    outcome = Outcome.rejected(
        RECORD, Rejected(ErrorCode.UNKNOWN_FIELDS, "unknown field(s): dagid")
    )
    dead = dead_letter_record(outcome, RECORD, topic="dlq")
    assert dead.topic == "dlq"
    assert dead.key == RECORD.key
    assert dead.value == RECORD.value
    assert dead.headers[:3] == RECORD.headers
    assert dead.headers[3:] == (
        ("error-code", b"unknown_fields"),
        ("error-message", b"unknown field(s): dagid"),
        ("source-topic", b"requests"),
        ("source-partition", b"4"),
        ("source-offset", b"99"),
    )


def test_a_copy_too_large_goes_without_its_value_then_without_its_headers() -> None:
    """Each smaller form keeps key and error/source headers and names what it left out."""
    outcome = Outcome.rejected(RECORD, Rejected(ErrorCode.MESSAGE_TOO_LARGE, "too big"))
    assert RECORD.value is not None
    digest = hashlib.sha256(RECORD.value).hexdigest().encode()

    no_value = dead_letter_record(outcome, RECORD, topic="dlq", omit=Omit.VALUE)
    assert (no_value.key, no_value.value) == (RECORD.key, b"")
    assert no_value.headers[:3] == RECORD.headers
    assert no_value.headers[-2:] == (
        ("value-omitted-bytes", str(len(RECORD.value)).encode()),
        ("value-sha256", digest),
    )

    bare = dead_letter_record(outcome, RECORD, topic="dlq", omit=Omit.VALUE_AND_HEADERS)
    assert bare.value == b""
    assert [name for name, _ in bare.headers] == [
        "error-code",
        "error-message",
        "source-topic",
        "source-partition",
        "source-offset",
        "value-omitted-bytes",
        "value-sha256",
        "headers-omitted",
    ]
    assert dict(bare.headers)["headers-omitted"] == b"3"


def test_tombstone_stays_a_tombstone() -> None:
    """A keyed tombstone's copy is a tombstone with the same key."""
    record = InboundRecord("requests", 0, 1, None, b"k", None)
    outcome = Outcome.rejected(record, Rejected(ErrorCode.INVALID_JSON, "no value"))
    dead = dead_letter_record(outcome, record, topic="dlq")
    assert (dead.key, dead.value) == (b"k", None)
    assert KEY_NULL_HEADER not in dict(dead.headers)


def test_a_keyless_tombstone_is_copied_with_an_empty_key_and_says_so() -> None:
    """Neither key nor value: the copy gets an empty key (a record needs one of the two)."""
    record = InboundRecord("requests", 0, 1, None, None, None)
    outcome = Outcome.rejected(record, Rejected(ErrorCode.INVALID_JSON, "no value"))
    dead = dead_letter_record(outcome, record, topic="dlq")
    assert (dead.key, dead.value) == (b"", None)
    assert dict(dead.headers)["error-code"] == b"invalid_json"
    assert dict(dead.headers)[KEY_NULL_HEADER] == b"true"


def test_error_message_header_is_bounded_utf8() -> None:
    """A long or non-ASCII message is cut and sent as UTF-8."""
    outcome = Outcome.rejected(RECORD, Rejected(ErrorCode.SCHEMA_VIOLATION, "é" * 5000))
    message = dict(dead_letter_record(outcome, RECORD, topic="dlq").headers)["error-message"]
    assert len(message.decode("utf-8")) <= 1001


def test_only_rejected_and_error_outcomes_are_dead_lettered() -> None:
    """needs_dead_letter is true for rejected and error, false otherwise; no error is a bug."""
    request = TriggerRequest(idempotency_key="k", dag_id="d")
    failed = Outcome.failed(
        RECORD, AirflowError(ErrorCode.DAG_NOT_FOUND, "404"), request=request, attempts=1
    )
    assert needs_dead_letter(failed)
    assert needs_dead_letter(Outcome.rejected(RECORD, Rejected(ErrorCode.INVALID_JSON, "x")))
    internal = Outcome.internal_error(RECORD, RuntimeError())
    assert needs_dead_letter(internal)
    assert (
        dict(dead_letter_record(internal, RECORD, topic="dlq").headers)["error-code"]
        == b"internal_error"
    )


def test_outcome_without_error_cannot_be_dead_lettered() -> None:
    """Dead-lettering a successful outcome is a caller bug and says so."""
    request = TriggerRequest(idempotency_key="k", dag_id="d")
    triggered = Outcome.triggered(RECORD, request, Run(), attempts=1)
    assert not needs_dead_letter(triggered)
    with pytest.raises(ValueError, match="without an error"):
        dead_letter_record(triggered, RECORD, topic="dlq")


def test_the_smallest_copy_leaves_out_the_key_too_and_says_how_large_it_was() -> None:
    """Omit.ALL: no value, no original headers, no key; the key's size in a header."""
    outcome = Outcome.rejected(RECORD, Rejected(ErrorCode.INVALID_JSON, "bad"))
    bare = dead_letter_record(outcome, RECORD, topic="dlq", omit=Omit.ALL)
    assert (bare.key, bare.value) == (None, b"")
    assert dict(bare.headers)[KEY_OMITTED_HEADER] == str(len(RECORD.key or b"")).encode()
