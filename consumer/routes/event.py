"""Event view: a Kafka record on a route topic → the document route expressions see.

Three kinds of record, told apart as the CloudEvents Kafka protocol binding says:

- structured content mode: header ``content-type: application/cloudevents+json``; the value
  is the whole CloudEvent;
- binary content mode: a ``ce_specversion`` header; attributes in ``ce_*`` headers, the
  ``content-type`` header is ``datacontenttype``, the value is the data;
- anything else: plain JSON, and expressions see the whole document.

Both CloudEvent modes are read by the ``cloudevents`` SDK (which also checks the required
attributes) and seen as the CloudEvents JSON format shows an event: ``specversion``, ``id``,
``source``, ``type``, ``subject``, ``time`` (RFC 3339), ``datacontenttype``, extensions and
``data`` (``data_base64`` for data that is not JSON or text). Every value is first held to
the message-size limit; plain JSON and structured events also pass ``decode``'s checks, and
binary-mode data of a JSON content type ``decode_json``'s (``CheckedJSONFormat``).
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, from_structured
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat

from consumer.contract import bounded
from consumer.errors import ErrorCode, Rejected
from consumer.limits import Limits
from consumer.pipeline.decode import decode, decode_json
from consumer.record import InboundRecord
from consumer.trace import TRACEPARENT, TRACESTATE, TraceContext, parse_trace, trace_from_headers

CONTENT_TYPE_HEADER = "content-type"
STRUCTURED_MEDIA_TYPE = "application/cloudevents"
SPECVERSION_HEADER = "ce_specversion"
CE_PREFIX = "ce_"
REQUIRED_ATTRIBUTES = frozenset({"specversion", "id", "source", "type"})
_FORMAT = JSONFormat()


class CheckedJSONFormat(JSONFormat):
    """The SDK's JSON format, reading binary-mode JSON data with ``decode_json``'s checks.

    The SDK's own ``read_data`` uses plain ``json.loads``: no depth bound before the parse,
    no number or duplicate-key checks, and JSON that does not parse silently becomes text.
    """

    def __init__(self, limits: Limits) -> None:
        """Read data within ``limits`` (its depth bound)."""
        self._limits = limits

    def read_data(
        self, body: bytes, datacontenttype: str | None
    ) -> dict[str, Any] | str | bytes | None:
        """The event's data: parsed and checked for a JSON content type, else as the SDK reads it.

        The content type is JSON as the SDK decides it (``JSON_CONTENT_TYPE_PATTERN``;
        ``application/json`` when absent); other types stay text, or bytes when not UTF-8.

        Args:
            body: the record value.
            datacontenttype: the ``content-type`` header, or None.

        Returns:
            The data (any JSON value for a JSON type, though the SDK's annotation names only
            objects), or None for an empty value.

        Raises:
            Rejected: as ``decode_json`` for JSON data that fails its checks.
        """
        content_type = datacontenttype or self.DEFAULT_CONTENT_TYPE
        if not body or not self.JSON_CONTENT_TYPE_PATTERN.match(content_type):
            return super().read_data(body, datacontenttype)
        data: dict[str, Any] | str | bytes | None = decode_json(body, self._limits)
        return data


class EventKind(enum.StrEnum):
    """How the event was carried."""

    JSON = "json"
    STRUCTURED = "cloudevent-structured"
    BINARY = "cloudevent-binary"


@dataclass(frozen=True)
class Event:
    """An event as route expressions see it.

    Attributes:
        kind: plain JSON or a CloudEvent in one of the two content modes.
        document: what expressions are evaluated against.
        trace: the trace context: the ``traceparent`` header, else the CloudEvent's
            distributed-tracing extension; None when neither is valid.
    """

    kind: EventKind
    document: Any
    trace: TraceContext | None

    @property
    def is_cloudevent(self) -> bool:
        """Whether the event is a CloudEvent (it then has a ``source`` and an ``id``)."""
        return self.kind is not EventKind.JSON


def read_event(record: InboundRecord, limits: Limits) -> Event:
    """Read a route topic's record as an event.

    Args:
        record: the record.
        limits: the message-size bound (and decode's depth and number checks).

    Returns:
        The event.

    Raises:
        Rejected: ``message_too_large``, ``invalid_encoding``, ``invalid_json`` or
            ``not_an_object`` as for a request; ``invalid_cloudevent`` for a CloudEvent
            the SDK refuses (a required attribute missing, a bad header).
    """
    header_trace = trace_from_headers(record.headers)
    content_type = _header_text(record, CONTENT_TYPE_HEADER)
    if content_type is not None and content_type.lower().startswith(STRUCTURED_MEDIA_TYPE):
        document = decode(record.value, limits)  # size, UTF-8, depth and JSON before the SDK
        if not content_type.lower().startswith(f"{STRUCTURED_MEDIA_TYPE}+json"):
            raise _invalid(f"event format {content_type!r} is not supported (only +json)")
        given = set(document)
        read = lambda: from_structured(_message({}, record), _FORMAT)  # noqa: E731
        attributes = _cloudevent(read, given)
        return _event(EventKind.STRUCTURED, attributes, header_trace)
    if record.header(SPECVERSION_HEADER) is not None:
        decode_size(record, limits)
        headers = _binary_headers(record)
        given = {name.lower().removeprefix(CE_PREFIX) for name in headers}
        given.add("datacontenttype" if CONTENT_TYPE_HEADER in given else "")
        checked = CheckedJSONFormat(limits)
        read = lambda: from_binary(_message(headers, record), checked)  # noqa: E731
        attributes = _cloudevent(read, given)
        return _event(EventKind.BINARY, attributes, header_trace)
    return Event(EventKind.JSON, decode(record.value, limits), header_trace)


def decode_size(record: InboundRecord, limits: Limits) -> None:
    """Hold a binary-mode value to the message-size limit (its data is read by the SDK).

    Raises:
        Rejected: ``message_too_large``.
    """
    size = len(record.value or b"")
    if size > limits.max_message_bytes:
        raise Rejected(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"value is {size} bytes, over the limit of {limits.max_message_bytes}",
            {"size": size, "max_bytes": limits.max_message_bytes},
        )


def _message(headers: dict[str, bytes], record: InboundRecord) -> KafkaMessage:
    # the Kafka key is left out: the SDK would add it as the partitionkey extension and
    # refuse a key that is not UTF-8, and routes have no use for it
    return KafkaMessage(headers=headers, key=None, value=record.value or b"")


def _binary_headers(record: InboundRecord) -> dict[str, bytes]:
    """The ``ce_*`` and ``content-type`` headers (the SDK decodes every header it is given)."""
    headers: dict[str, bytes] = {}
    for name, value in record.headers:
        lowered = name.lower()
        if lowered.startswith(CE_PREFIX) or lowered == CONTENT_TYPE_HEADER:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(f"header {bounded(name)!r} is not UTF-8") from None
            headers[name] = value
    return headers


def _cloudevent(read: Any, given: set[str]) -> dict[str, Any]:
    """The SDK's event as the JSON format shows it; its refusals as ``invalid_cloudevent``.

    The SDK fills a missing ``id`` with a random UUID and a missing ``time`` with now: for
    events read from Kafka that would make every re-sent event a new request, so required
    attributes must be given and invented ones are dropped.
    """
    missing = sorted(REQUIRED_ATTRIBUTES - given)
    if missing:
        raise _invalid(f"required attribute(s) missing: {', '.join(missing)}")
    try:
        event = read()
        attributes = dict(event.get_attributes())
        data = event.get_data()
    except (BaseCloudEventException, ValueError, TypeError, RecursionError) as exc:
        raise _invalid(bounded(" ".join(str(exc).split()), 300)) from None
    attributes = {name: value for name, value in attributes.items() if name in given}
    for name, value in attributes.items():
        if isinstance(value, datetime):
            attributes[name] = _rfc3339(value)
    if isinstance(data, bytes | bytearray):
        attributes["data_base64"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        attributes["data"] = data
    return attributes


def _event(kind: EventKind, attributes: dict[str, Any], header_trace: TraceContext | None) -> Event:
    trace = header_trace or parse_trace(attributes.get(TRACEPARENT), attributes.get(TRACESTATE))
    return Event(kind, attributes, trace)


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _header_text(record: InboundRecord, name: str) -> str | None:
    raw = record.header(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _invalid(message: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_CLOUDEVENT, f"invalid CloudEvent: {message}", {})
