"""The values durable deferral speaks in: a parked request and the counts of what waits (issue 30).

A request whose DAG is at its limit (or whose ``not_before`` lies ahead) is written to the
store with its offset committed, so that it neither blocks its partition nor is lost; the
releaser triggers and answers it later, in arrival order, from what these values keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from consumer.store.entry import Coordinates


class DeferralReason(StrEnum):
    """Why a request waits: its DAG's limits, or its own ``not_before``."""

    LIMIT = "limit"
    NOT_BEFORE = "not_before"


@dataclass(frozen=True, slots=True)
class DeferredRequest:
    """A request parked until its DAG's flow allows it (or its not_before).

    It keeps everything needed to trigger and answer it later, possibly on another replica
    after a crash: the validated request, the record it came in (its reply and dead letter
    echo the record's key, value and headers) and its trace context.

    Attributes:
        key: the idempotency key.
        dag_id: the DAG the request targets.
        fingerprint: the request's fingerprint.
        request_json: the validated request as JSON.
        topic: the request record's topic; with partition, offset and key, unique.
        partition: its partition.
        offset: its offset.
        timestamp_ms: its timestamp in milliseconds since the epoch, or None.
        record_key: the record's key bytes, or None.
        record_value: the record's value bytes, or None.
        headers: the record's headers in order, duplicates kept.
        route: the route that derived the request from an event, or None.
        traceparent: the request's W3C traceparent, or None.
        tracestate: its tracestate, or None.
        reason: a ``DeferralReason`` value.
        due_at: when it may go (UTC); None: now, subject to the DAG's limits.
        released: an operator let the DAG's waiting requests through, limits aside.
        seq: arrival order, assigned by the store on insert (increasing per store).
        created_at: when the store took it, on the store's clock (``store_now``).
    """

    key: str
    dag_id: str
    fingerprint: str
    request_json: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    record_key: bytes | None
    record_value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    route: str | None
    traceparent: str | None
    tracestate: str | None
    reason: str
    due_at: datetime | None
    released: bool = False
    seq: int = 0
    created_at: datetime | None = None

    @property
    def at(self) -> Coordinates:
        """The request record's (topic, partition, offset)."""
        return (self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class DeferredCount:
    """How many requests of one DAG wait for one reason, and since when (metrics, CLI).

    Attributes:
        dag_id: the DAG.
        reason: a ``DeferralReason`` value.
        count: how many of its requests wait for it.
        oldest_created_at: when the oldest of them was deferred (store clock, UTC).
    """

    dag_id: str
    reason: str
    count: int
    oldest_created_at: datetime
