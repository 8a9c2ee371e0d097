"""Kafka records as plain values: what the worker reads and what it publishes."""

from __future__ import annotations

from dataclasses import dataclass

from consumer.trace import TraceContext, trace_from_headers

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class InboundRecord:
    """One record read from the request topic, detached from any Kafka client.

    Attributes:
        topic: the topic it was read from.
        partition: its partition.
        offset: its offset in that partition.
        timestamp_ms: the record timestamp in milliseconds since the epoch; None when unknown.
        key: the raw key bytes; None for a null key.
        value: the raw value bytes; None for a tombstone.
        headers: the record headers, in order, duplicates kept.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    def header(self, name: str) -> bytes | None:
        """Return the last value of header ``name`` (case-sensitive), or None when absent.

        Args:
            name: the header name.

        Returns:
            The value bytes of the last header with that name, or None.
        """
        found: bytes | None = None
        for header_name, value in self.headers:
            if header_name == name:
                found = value
        return found

    def trace_context(self) -> TraceContext | None:
        """The request's W3C trace context, from its ``traceparent``/``tracestate`` headers."""
        return trace_from_headers(self.headers)


@dataclass(frozen=True)
class DerivedRecord(InboundRecord):
    """An event record as one route read it (spec §8 Routes): answered as its own request.

    The Kafka coordinates, key, value and headers are the event's, unchanged (its reply's
    ``source`` and its dead letter are the event's); a record matched by several routes
    gives one of these per route.

    Attributes:
        route: the name of the route that derived the request.
        trace: the event's trace context (header or CloudEvents extension), if any.
    """

    route: str = ""
    trace: TraceContext | None = None

    def trace_context(self) -> TraceContext | None:
        """The event's trace context as its route read it (header or CloudEvents extension)."""
        return self.trace


@dataclass(frozen=True)
class OutboundRecord:
    """One record to publish (a reply or a dead-letter record).

    Attributes:
        topic: the topic to publish to.
        key: the key bytes, or None.
        value: the value bytes, or None.
        headers: the headers, in order.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
