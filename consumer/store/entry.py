"""The values the idempotency store speaks in: an entry, its status and its request's origin."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

from consumer.trace import TraceContext


class EntryStatus(StrEnum):
    """What the store knows about a key.

    ``pending`` is written before the Airflow POST, so a run found later under the key's
    run id is recognisable as made by this request. ``triggered`` and ``duplicate`` are the
    final outcomes worth remembering: the key maps to a run. Outcomes that create no run
    (rejections, Airflow data errors) are not remembered; the caller releases the key.
    """

    PENDING = "pending"
    TRIGGERED = "triggered"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class RequestOrigin:
    """What a later reply about a key echoes of the request that made its run.

    The ``completed`` reply of a tracked run (spec §2) is sent long after the request's
    own reply, maybe by another process after a restart, so it is addressed and filled
    from what the store kept, headers included.

    Attributes:
        topic: the request record's topic.
        partition: its partition.
        offset: its offset.
        timestamp_ms: its timestamp in milliseconds since the epoch, or None.
        correlation_id: the request's correlation id, or None.
        reply_topic: the allowed reply topic the request named, or None for the default.
        route: the route that derived the request from an event (spec §8 Routes), or None.
        trace: the request's W3C trace context, or None (also when trace context is off).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    correlation_id: str | None = None
    reply_topic: str | None = None
    route: str | None = None
    trace: TraceContext | None = None


Coordinates: TypeAlias = tuple[str, int, int]
"""A request record's place in Kafka: (topic, partition, offset)."""


def coordinates(origin: RequestOrigin | None) -> Coordinates | None:
    """Return the (topic, partition, offset) that identify ``origin``'s request, or None."""
    return None if origin is None else (origin.topic, origin.partition, origin.offset)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One key's record, as read from the store.

    Attributes:
        key: the idempotency key.
        fingerprint: the request fingerprint the key was first claimed with.
        dag_id: the DAG the request targets.
        dag_run_id: the run id derived from the key.
        status: pending, triggered or duplicate.
        run_state: Airflow's state of the run when last recorded, if known.
        logical_date: the run's logical date as ISO 8601 text, if any.
        run_url: the run's page in the Airflow UI, if known.
        track: whether the request asked for a completion reply.
        completed_at: when a tracked run was seen in a final state, else None.
        created_at: when the key was first claimed (UTC); retention counts from here.
        updated_at: when the entry last changed (UTC).
        origin: the request that recorded the run, if it was given (see ``RequestOrigin``).
        abandoned_at: when tracking gave up on the run (past the horizon), else None.
        claimed_here: set only on what ``mark_pending`` returns: True when this very call
            wrote the mark (another process may have written one for the same record).
    """

    key: str
    fingerprint: str
    dag_id: str
    dag_run_id: str
    status: EntryStatus
    run_state: str | None
    logical_date: str | None
    run_url: str | None
    track: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    origin: RequestOrigin | None = None
    abandoned_at: datetime | None = None
    # a fact about one call, not the entry: left out of equality
    claimed_here: bool = field(default=False, compare=False)


class RerunStatus(StrEnum):
    """Where one deliberate re-run (a ``rerun`` request, issue 29) of a key's run stands.

    ``pending`` is written before the clear call, with the run's clear evidence as read
    before it, so a re-delivery after a crash can tell whether the clear happened;
    ``done`` once the clear (or the trigger of a key that had no run) is answered.
    """

    PENDING = "pending"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class RerunMark:
    """One re-run of a key's run, named by the request's ``rerun.id``.

    Attributes:
        key: the idempotency key whose run is re-run.
        rerun_id: the act's id (``rerun.id``): one clear per key and id.
        status: pending (the clear may be under way) or done.
        evidence: what the run looked like before the clear (``airflow.clearing``'s
            text), or None when nothing was read (the key had no run yet).
        at: the (topic, partition, offset) of the request record that wrote the mark.
        run_state: Airflow's state of the run right after the clear, once done.
        created_at: when the mark was written (UTC); it is purged with its key.
        claimed_here: set only on what ``mark_rerun`` returns: True when this very call
            wrote the mark.
    """

    key: str
    rerun_id: str
    status: RerunStatus
    evidence: str | None
    at: Coordinates
    run_state: str | None
    created_at: datetime
    claimed_here: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class RememberedRefusal:
    """A definite refusal that released its key, remembered for the record it answered.

    Releasing the key lets a corrected request take it; if the refused record is then
    delivered again (a crash before its offset was committed), the key's entry belongs to
    that other request and judging it against the entry would answer
    ``idempotency_key_reused``. The record's own answer is kept here instead, so its
    re-delivery is answered the same (nemesis seed 303).

    Attributes:
        key: the idempotency key the record named.
        at: the record's (topic, partition, offset).
        code: the error code it was answered with (``ErrorCode`` value).
        message: the error message.
        details: the error details (JSON-serializable).
        created_at: when it was remembered (UTC); purged with the retention window.
    """

    key: str
    at: Coordinates
    code: str
    message: str
    details: dict[str, Any]
    created_at: datetime
