"""Deferral: a request parked in the store until its DAG's flow or its ``not_before`` allows it.

A parked request keeps everything needed to trigger and answer it later: the record as read
(coordinates, key, value, headers; a route's name and trace context) and the request as
validated. The releaser (``flow/releaser.py``) turns it back into the ``Admitted`` request
that ``Pipeline.execute`` takes, so a released request is claimed, triggered, recorded and
answered by the very code that answers any other, with the reply it would have had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from consumer.contract import TriggerRequest
from consumer.flow.config import FlowLimits
from consumer.flow.waiting import Waiting
from consumer.record import DerivedRecord, InboundRecord
from consumer.store.deferred import DeferralReason, DeferredRequest
from consumer.trace import TraceContext


@dataclass(frozen=True)
class Flow:
    """What the pipeline defers with: the limits, what waits, and the releaser's wake-up.

    Attributes:
        limits: the flow limits (``FlowLimits()``: only ``not_before`` defers).
        waiting: what waits in the store (``MAX_DEFERRED`` back-pressure).
        wake: told when a request was deferred (the releaser looks at once).
    """

    limits: FlowLimits
    waiting: Waiting
    wake: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True)
class Deferred:
    """``execute``'s answer for a parked request: no reply now, its offset may be committed.

    Attributes:
        reason: its DAG's limits, or its own ``not_before``.
        due_at: the request's ``not_before`` when that is what it waits for.
    """

    reason: DeferralReason
    due_at: datetime | None


def wait_reason(
    request: TriggerRequest, limits: FlowLimits, now: datetime
) -> DeferralReason | None:
    """Why ``request`` must wait instead of being triggered now, or None.

    Args:
        request: the valid request.
        limits: the flow limits.
        now: the current time (UTC).

    Returns:
        NOT_BEFORE for a time still to come, LIMIT for a limited DAG, else None.
    """
    if request.not_before is not None and request.not_before > now:
        return DeferralReason.NOT_BEFORE
    return DeferralReason.LIMIT if limits.limited(request.dag_id) else None


def parked(
    record: InboundRecord, request: TriggerRequest, fingerprint: str, reason: DeferralReason
) -> DeferredRequest:
    """The store row of a request that waits for ``reason``."""
    trace = record.trace_context() if isinstance(record, DerivedRecord) else None
    return DeferredRequest(
        key=request.idempotency_key,
        dag_id=request.dag_id,
        fingerprint=fingerprint,
        request_json=request.model_dump_json(),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        record_key=record.key,
        record_value=record.value,
        headers=record.headers,
        route=record.route if isinstance(record, DerivedRecord) else None,
        traceparent=trace.traceparent if trace is not None else None,
        tracestate=trace.tracestate if trace is not None else None,
        reason=reason.value,
        due_at=request.not_before if reason is DeferralReason.NOT_BEFORE else None,
    )


def unparked(row: DeferredRequest) -> tuple[InboundRecord, TriggerRequest]:
    """The record and request a parked row was made of (``parked``'s inverse).

    Raises:
        pydantic.ValidationError: the stored request no longer validates (a bug, or a row
            written by a newer release): the releaser answers it ``internal_error``.
    """
    fields = (row.topic, row.partition, row.offset, row.timestamp_ms, row.record_key)
    record: InboundRecord
    if row.route is None:
        record = InboundRecord(*fields, row.record_value, row.headers)
    else:
        trace = None
        if row.traceparent is not None:
            trace = TraceContext(row.traceparent, row.tracestate)
        record = DerivedRecord(*fields, row.record_value, row.headers, row.route, trace)
    return record, TriggerRequest.model_validate_json(row.request_json)
