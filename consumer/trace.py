"""Trace context: a W3C ``traceparent``/``tracestate`` carried from a message to its DAG run.

The context comes from the record's ``traceparent`` and ``tracestate`` headers (W3C Trace
Context over Kafka, as OpenTelemetry's instrumentations write it) or, for a CloudEvent, its
distributed-tracing extension. It goes into the run's conf under
``airflow/dagrun_parent_trace_context`` (Airflow's tracing reads that key to make the run a
child span of the caller; older versions just keep it in conf), and back on the reply as
headers. It is never part of a request's fingerprint: a replay with a new trace is the same
request. A malformed ``traceparent`` is ignored, as the W3C spec asks of receivers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumer.record import Headers

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# the run-conf key Airflow's tracing reads: a traceparent, or {traceparent, tracestate}
AIRFLOW_TRACE_CONF_KEY = "airflow/dagrun_parent_trace_context"
MAX_TRACESTATE_CHARS = 512  # W3C: at most 32 list members; 512 is what vendors must keep

# W3C Trace Context §3.2: version-traceid-parentid-flags, lower-case hex; a future version
# may append fields after a dash
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class TraceContext:
    """A valid W3C trace context.

    Attributes:
        traceparent: the ``traceparent`` value.
        tracestate: the ``tracestate`` value, or None when absent or unusable.
    """

    traceparent: str
    tracestate: str | None = None

    def as_conf_value(self) -> dict[str, str]:
        """The value Airflow reads under ``airflow/dagrun_parent_trace_context``."""
        value = {TRACEPARENT: self.traceparent}
        if self.tracestate:
            value[TRACESTATE] = self.tracestate
        return value

    def as_headers(self) -> Headers:
        """The context as Kafka headers (``traceparent``, then ``tracestate``)."""
        headers: Headers = ((TRACEPARENT, self.traceparent.encode("ascii")),)
        if self.tracestate:
            headers += ((TRACESTATE, self.tracestate.encode("ascii")),)
        return headers


def parse_trace(traceparent: object, tracestate: object = None) -> TraceContext | None:
    """Build a trace context from raw values; None when ``traceparent`` is not valid.

    Args:
        traceparent: the ``traceparent`` value (str or bytes), or None.
        tracestate: the ``tracestate`` value, or None; dropped when not printable ASCII
            or over 512 characters.

    Returns:
        The context, or None.
    """
    parent = _text(traceparent)
    if parent is None or not _valid_traceparent(parent):
        return None
    state = _text(tracestate)
    if state is not None:
        state = state.strip()
        if not state or len(state) > MAX_TRACESTATE_CHARS or not _PRINTABLE_ASCII.fullmatch(state):
            state = None
    return TraceContext(parent, state)


def trace_from_headers(headers: Headers) -> TraceContext | None:
    """Read the ``traceparent`` and ``tracestate`` headers (the last of each counts).

    Args:
        headers: a record's headers.

    Returns:
        The context, or None when there is no valid ``traceparent`` header.
    """
    found: dict[str, bytes] = {}
    for name, value in headers:
        if name in (TRACEPARENT, TRACESTATE):
            found[name] = value
    if TRACEPARENT not in found:
        return None
    return parse_trace(found[TRACEPARENT], found.get(TRACESTATE))


def with_trace(conf: Mapping[str, Any], trace: TraceContext) -> dict[str, Any]:
    """The run conf with the trace context added (a conf that sets the key keeps its own).

    Args:
        conf: the request's conf.
        trace: the context to add.

    Returns:
        A new conf.
    """
    if AIRFLOW_TRACE_CONF_KEY in conf:
        return dict(conf)
    return {**conf, AIRFLOW_TRACE_CONF_KEY: trace.as_conf_value()}


def _valid_traceparent(value: str) -> bool:
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return False
    return not (version == "00" and rest)  # version 00 has exactly four fields


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None
