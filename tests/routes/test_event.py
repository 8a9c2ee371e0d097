"""Event view: plain JSON, CloudEvents structured and binary, with trace context."""

from __future__ import annotations

import json

import pytest

from consumer.errors import ErrorCode, Rejected
from consumer.limits import DEFAULT_LIMITS
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
