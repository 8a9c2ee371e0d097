"""Event view: plain JSON, CloudEvents structured and binary, with trace context."""

from __future__ import annotations

import json

import pytest

from consumer.errors import ErrorCode, Rejected
from consumer.limits import DEFAULT_LIMITS, Limits
from consumer.record import InboundRecord
from consumer.routes.event import EventKind, read_event

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "traceparent": TP}


def _record(value: bytes, *headers: tuple[str, bytes]) -> InboundRecord:
    return InboundRecord("ev", 0, 0, None, None, value, tuple(headers))


def test_plain_json_is_the_whole_document() -> None:
    """A record without CloudEvents markers is seen as its JSON document."""
    event = read_event(_record(b'{"a": 1}'), DEFAULT_LIMITS)
    assert (event.kind, event.document, event.trace) == (EventKind.JSON, {"a": 1}, None)


def test_structured_cloudevent_with_its_tracing_extension() -> None:
    """content-type application/cloudevents+json: attributes, data and traceparent."""
    value = json.dumps({**CE, "time": "2025-01-01T00:00:00Z", "data": {"x": 1}}).encode()
    event = read_event(
        _record(value, ("content-type", b"application/cloudevents+json")), DEFAULT_LIMITS
    )
    assert event.kind is EventKind.STRUCTURED
    assert event.document["data"] == {"x": 1}
    assert event.document["time"] == "2025-01-01T00:00:00Z"
    assert event.trace is not None and event.trace.traceparent == TP


def test_binary_cloudevent_and_the_header_trace_wins() -> None:
    """ce_* headers are attributes; a traceparent header wins over ce_traceparent."""
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [(f"ce_{k}", v.encode()) for k, v in CE.items()]
    record = _record(
        b'{"x": 2}',
        *headers,
        ("content-type", b"application/json"),
        ("traceparent", other.encode()),
    )
    event = read_event(record, DEFAULT_LIMITS)
    assert event.kind is EventKind.BINARY
    assert (event.document["source"], event.document["data"]) == ("/s", {"x": 2})
    assert event.trace is not None and event.trace.traceparent == other


def test_a_cloudevent_without_an_id_is_invalid_cloudevent() -> None:
    """The SDK's refusal of a missing required attribute is invalid_cloudevent."""
    value = json.dumps({"specversion": "1.0", "source": "/s", "type": "t"}).encode()
    with pytest.raises(Rejected) as caught:
        read_event(
            _record(value, ("content-type", b"application/cloudevents+json")), DEFAULT_LIMITS
        )
    assert caught.value.code is ErrorCode.INVALID_CLOUDEVENT


def _binary(value: bytes, content_type: bytes | None = b"application/json") -> InboundRecord:
    """A binary-mode CloudEvent record with ``value`` as its data."""
    headers = [(f"ce_{k}", v.encode()) for k, v in CE.items() if k != "traceparent"]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return _record(value, *headers)


def _refusal(record: InboundRecord, limits: Limits = DEFAULT_LIMITS) -> Rejected:
    with pytest.raises(Rejected) as caught:
        read_event(record, limits)
    return caught.value


def test_binary_json_data_nesting_too_deep_is_invalid_json_before_parsing() -> None:
    """Data nested past the message depth bound is refused by the scan, never parsed."""
    limits = Limits(max_conf_depth=4)
    assert read_event(_binary(b"[[[[[1]]]]]"), limits).document["data"] == [[[[[1]]]]]
    deep = b"[" * 100_000 + b"]" * 100_000  # json.loads would hit RecursionError
    rejected = _refusal(_binary(deep), limits)
    assert rejected.code is ErrorCode.INVALID_JSON
    assert rejected.details == {"reason": "too_deep", "max_depth": 5}
    assert _refusal(_binary(b'{"a": [[[[{}]]]]}'), limits).details["reason"] == "too_deep"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"amount": 1e400}', "number_out_of_range"),
        (b"[-1e400]", "number_out_of_range"),
        (b'{"n": ' + b"1" * 1001 + b"}", "number_too_long"),
        (b'{"n": NaN}', "non_finite_number"),
    ],
)
def test_binary_json_data_numbers_are_checked(data: bytes, reason: str) -> None:
    """A number a double cannot hold, an overlong one or NaN in binary data is invalid_json."""
    rejected = _refusal(_binary(data))
    assert (rejected.code, rejected.details["reason"]) == (ErrorCode.INVALID_JSON, reason)


def test_binary_json_data_with_a_repeated_key_is_refused() -> None:
    """A key twice in one object of binary data is schema_violation, as in any message."""
    rejected = _refusal(_binary(b'{"order": {"id": 1, "id": 2}}'))
    assert rejected.code is ErrorCode.SCHEMA_VIOLATION
    assert [e["field"] for e in rejected.details["errors"]] == ["order.id"]


@pytest.mark.parametrize(
    "content_type", [b"application/json", b"text/json", b"application/vnd.acme+json; v=1", None]
)
def test_binary_data_declared_json_that_does_not_parse_is_invalid_json(
    content_type: bytes | None,
) -> None:
    """Data of a JSON content type (or none: JSON by default) must parse; it never falls to text."""
    rejected = _refusal(_binary(b'{"id": 1,', content_type))
    assert rejected.code is ErrorCode.INVALID_JSON
    assert rejected.details["reason"] == "Expecting property name enclosed in double quotes"


def test_binary_json_data_not_utf8_is_invalid_encoding() -> None:
    """JSON data that is not UTF-8 is invalid_encoding, not bytes."""
    assert _refusal(_binary(b'"caf\xe9"')).code is ErrorCode.INVALID_ENCODING


def test_binary_json_array_and_string_data_are_read() -> None:
    """JSON data need not be an object: an array or a string is the event's data."""
    array = read_event(_binary(b'[{"id": 1}, {"id": 2}]'), DEFAULT_LIMITS)
    assert array.document["data"] == [{"id": 1}, {"id": 2}]
    text = read_event(_binary(b'"hello"', b"application/json; charset=utf-8"), DEFAULT_LIMITS)
    assert text.document["data"] == "hello"


def test_binary_data_of_other_content_types_is_text_or_bytes_as_the_sdk_reads_it() -> None:
    """text/plain data stays text (even when it looks like JSON); non-UTF-8 data is base64."""
    plain = read_event(_binary(b'{"a": 1e400}', b"text/plain"), DEFAULT_LIMITS)
    assert plain.document["data"] == '{"a": 1e400}'
    raw = read_event(_binary(b"\x00\xff", b"application/octet-stream"), DEFAULT_LIMITS)
    assert raw.document["data_base64"] == "AP8="
    assert "data" not in raw.document
    empty = read_event(_binary(b""), DEFAULT_LIMITS)
    assert "data" not in empty.document
