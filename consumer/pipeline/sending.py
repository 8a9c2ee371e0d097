"""What a request is sent to Airflow as, and what the store keeps of where it came from.

Only the Airflow call sees what the conf gains: the request it came from
(``consumer.provenance``) and the message's W3C trace context. The fingerprint was taken
without them: a replay with a new trace is the same request, and where a request sits is
no part of what it asks.
"""

from __future__ import annotations

from consumer.contract import TriggerRequest
from consumer.provenance import with_source
from consumer.record import DerivedRecord, InboundRecord
from consumer.store import RequestOrigin
from consumer.trace import TraceContext, with_trace


def as_sent(
    request: TriggerRequest, record: InboundRecord, fingerprint: str, *, trace_context: bool
) -> TriggerRequest:
    """The request as sent to Airflow: its conf names the request and its trace context."""
    conf = with_source(request.conf, (record.topic, record.partition, record.offset, fingerprint))
    trace = trace_of(record, trace_context=trace_context)
    return request.model_copy(update={"conf": conf if trace is None else with_trace(conf, trace)})


def trace_of(record: InboundRecord, *, trace_context: bool) -> TraceContext | None:
    """The record's trace context; None when there is none or trace context is off."""
    return record.trace_context() if trace_context else None


def origin_of(
    record: InboundRecord, request: TriggerRequest, *, trace_context: bool
) -> RequestOrigin:
    """What the store keeps of the request, for the ``completed`` reply of its run."""
    return RequestOrigin(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        correlation_id=request.correlation_id,
        reply_topic=request.reply_topic,
        route=record.route if isinstance(record, DerivedRecord) else None,
        trace=trace_of(record, trace_context=trace_context),
    )
