"""One stored row → ``StoredEntry``, ``RerunMark`` or ``RememberedRefusal`` (both stores).

``COLUMNS`` of ``sqlite_schema`` and ``postgres_schema`` name, in this order: key,
fingerprint, dag_id, dag_run_id, status, run_state, logical_date, run_url, track,
completed_at, created_at, updated_at, correlation_id, reply_topic, source_topic,
source_partition, source_offset, source_timestamp_ms, abandoned_at, route, traceparent,
tracestate (never the lease columns, which the entry does not carry). Only how an instant
is stored differs (epoch seconds in SQLite, ``timestamptz`` in PostgreSQL): the caller
passes its ``instant`` converter. ``RERUN_COLUMNS`` name a ``reruns`` row's, in
``RerunMark`` order; ``REFUSAL_COLUMNS`` a remembered refusal's, details as JSON text;
``DEFERRED_COLUMNS`` a deferred request's, its headers as JSON text (``headers_text``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from consumer.store.deferred import DeferredRequest
from consumer.store.entry import (
    EntryStatus,
    RememberedRefusal,
    RequestOrigin,
    RerunMark,
    RerunStatus,
    StoredEntry,
)
from consumer.trace import parse_trace

Instant = Callable[[Any], datetime]
"""Turns a stored instant (never None) into a timezone-aware UTC datetime."""

RERUN_COLUMNS = (
    "key, rerun_id, status, evidence, source_topic, source_partition, source_offset,"
    " run_state, created_at"
)
"""The columns of a re-run mark, in the order ``rerun_from_row`` reads them (both stores)."""
REFUSAL_COLUMNS = (
    "key, source_topic, source_partition, source_offset, code, message, details, created_at"
)
"""The columns of a remembered refusal, in the order ``refusal_from_row`` reads them."""
DEFERRED_VALUES = (
    "key, dag_id, fingerprint, request_json, source_topic, source_partition, source_offset,"
    " source_timestamp_ms, record_key, record_value, headers, route, traceparent, tracestate,"
    " reason, due_at, released"
)
"""The columns a deferral writes, in ``DeferredRequest`` order (``deferred_values``)."""
DEFERRED_COLUMNS = f"seq, {DEFERRED_VALUES}, created_at"
"""The columns of a deferred request, in the order ``deferred_from_row`` reads them."""


def entry_from_row(row: Sequence[Any], instant: Instant) -> StoredEntry:
    """Return the entry that ``row`` holds.

    Args:
        row: a row selected as the store's ``COLUMNS``.
        instant: the store's converter of a stored instant to UTC.

    Returns:
        The entry, with UTC datetimes and an origin only if its coordinates were stored.
    """
    return StoredEntry(
        key=row[0],
        fingerprint=row[1],
        dag_id=row[2],
        dag_run_id=row[3],
        status=EntryStatus(row[4]),
        run_state=row[5],
        logical_date=row[6],
        run_url=row[7],
        track=bool(row[8]),
        completed_at=None if row[9] is None else instant(row[9]),
        created_at=instant(row[10]),
        updated_at=instant(row[11]),
        origin=_origin(row),
        abandoned_at=None if row[18] is None else instant(row[18]),
    )


def _origin(row: Sequence[Any]) -> RequestOrigin | None:
    topic, partition, offset = row[14], row[15], row[16]
    if topic is None or partition is None or offset is None:
        return None
    return RequestOrigin(
        topic=topic,
        partition=int(partition),
        offset=int(offset),
        timestamp_ms=None if row[17] is None else int(row[17]),
        correlation_id=row[12],
        reply_topic=row[13],
        route=row[19],
        # stored valid; parsed again so that a hand-edited row cannot break a reply's headers
        trace=parse_trace(row[20], row[21]),
    )


def rerun_from_row(row: Sequence[Any], instant: Instant) -> RerunMark:
    """Return the re-run mark that ``row`` (selected as ``RERUN_COLUMNS``) holds.

    Args:
        row: a row of the store's re-run table.
        instant: the store's converter of a stored instant to UTC.

    Returns:
        The mark, with a UTC ``created_at``.
    """
    return RerunMark(
        key=row[0],
        rerun_id=row[1],
        status=RerunStatus(row[2]),
        evidence=row[3],
        at=(row[4], int(row[5]), int(row[6])),
        run_state=row[7],
        created_at=instant(row[8]),
    )


def refusal_from_row(row: Sequence[Any], instant: Instant) -> RememberedRefusal:
    """Return the remembered refusal that ``row`` (selected as ``REFUSAL_COLUMNS``) holds.

    Args:
        row: a row of the store's refusals table.
        instant: the store's converter of a stored instant to UTC.

    Returns:
        The refusal, its details parsed back from JSON, with a UTC ``created_at``.
    """
    return RememberedRefusal(
        key=row[0],
        at=(row[1], int(row[2]), int(row[3])),
        code=row[4],
        message=row[5],
        details=json.loads(row[6]),
        created_at=instant(row[7]),
    )


def details_text(refusal: RememberedRefusal) -> str:
    """Return ``refusal``'s details as the JSON text both stores keep.

    Args:
        refusal: the refusal to remember.

    Returns:
        Compact JSON with sorted keys.

    Raises:
        TypeError: the details are not JSON-serializable (a bug of the caller).
    """
    return json.dumps(refusal.details, sort_keys=True, separators=(",", ":"))


def headers_text(headers: Sequence[tuple[str, bytes]]) -> str:
    """Return a record's headers as the JSON text both stores keep: [[name, base64], …].

    Args:
        headers: the record's headers, in order, duplicates kept.

    Returns:
        Compact JSON; values in standard base64, since header values are any bytes.
    """
    pairs = [[name, base64.b64encode(value).decode("ascii")] for name, value in headers]
    return json.dumps(pairs, separators=(",", ":"))


def headers_from_text(text: str) -> tuple[tuple[str, bytes], ...]:
    """Return the headers ``headers_text`` wrote, in their order.

    Args:
        text: the stored JSON text.

    Returns:
        (name, value) pairs.
    """
    return tuple((str(name), base64.b64decode(value)) for name, value in json.loads(text))


def deferred_values(request: DeferredRequest) -> tuple[Any, ...]:
    """Return ``request``'s values for ``DEFERRED_VALUES``, in that order (``due_at`` as is).

    Args:
        request: the request to defer.

    Returns:
        The values; the caller converts ``due_at`` (index -2) to its stored instant.
    """
    return (
        request.key,
        request.dag_id,
        request.fingerprint,
        request.request_json,
        request.topic,
        request.partition,
        request.offset,
        request.timestamp_ms,
        request.record_key,
        request.record_value,
        headers_text(request.headers),
        request.route,
        request.traceparent,
        request.tracestate,
        request.reason,
        request.due_at,
        request.released,
    )


def deferred_from_row(row: Sequence[Any], instant: Instant) -> DeferredRequest:
    """Return the deferred request that ``row`` (selected as ``DEFERRED_COLUMNS``) holds.

    Args:
        row: a row of the store's deferred table.
        instant: the store's converter of a stored instant to UTC.

    Returns:
        The request, with UTC datetimes and bytes values.
    """
    return DeferredRequest(
        seq=int(row[0]),
        key=row[1],
        dag_id=row[2],
        fingerprint=row[3],
        request_json=row[4],
        topic=row[5],
        partition=int(row[6]),
        offset=int(row[7]),
        timestamp_ms=None if row[8] is None else int(row[8]),
        record_key=None if row[9] is None else bytes(row[9]),
        record_value=None if row[10] is None else bytes(row[10]),
        headers=headers_from_text(row[11]),
        route=row[12],
        traceparent=row[13],
        tracestate=row[14],
        reason=row[15],
        due_at=None if row[16] is None else instant(row[16]),
        released=bool(row[17]),
        created_at=instant(row[18]),
    )
