"""Deferred rows the operator tools' tests share (``deferred`` CLI, doctor's deferral check)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.store import IdempotencyStore
from consumer.store.deferred import DeferralReason, DeferredRequest


def deferred_request(key: str, dag_id: str, offset: int, **changes: Any) -> DeferredRequest:
    """A deferred request of ``dag_id`` from ``requests``/0 at ``offset``, due now."""
    request = DeferredRequest(
        key=key,
        dag_id=dag_id,
        fingerprint=f"fp-{key}",
        request_json=f'{{"dag_id": "{dag_id}", "idempotency_key": "{key}"}}',
        topic="requests",
        partition=0,
        offset=offset,
        timestamp_ms=None,
        record_key=key.encode(),
        record_value=b"{}",
        headers=(),
        route=None,
        traceparent=None,
        tracestate=None,
        reason=DeferralReason.LIMIT,
        due_at=None,
    )
    return replace(request, **changes)


def fill_backlog(store: IdempotencyStore) -> None:
    """Defer three requests of ``etl_orders`` (one waits a day ahead) and two of ``reports``."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    for request in (
        deferred_request("o1", "etl_orders", 1),
        deferred_request("o2", "etl_orders", 2),
        deferred_request("o3", "etl_orders", 3, reason=DeferralReason.NOT_BEFORE, due_at=tomorrow),
        deferred_request("r1", "reports", 4),
        deferred_request("r2", "reports", 5),
    ):
        assert store.defer(request)
