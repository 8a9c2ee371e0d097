"""Tracked runs made on the real Airflow and recorded as the pipeline records them."""

from __future__ import annotations

import uuid

from consumer.airflow import AirflowApi, TriggerResult
from consumer.run_id import run_id_for
from consumer.settings import Settings
from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin, StoredEntry
from consumer.trace import TraceContext

RUN_TIMEOUT = 180.0  # runs take seconds, up to a minute on a loaded shared stack
RETENTION = Settings.model_fields["dedup_retention"].default  # as the worker opens it
TRACE = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "acme=t61rcWkgMzE")


def new_key() -> str:
    """An idempotency key no other test (or rerun) uses."""
    return f"track-{uuid.uuid4().hex}"


def origin_for(key: str) -> RequestOrigin:
    """The request origin recorded for ``key``: fixed coordinates, a correlation id, a route."""
    return RequestOrigin(
        "requests", 1, 7, 1_735_689_600_000, f"corr-{key}", "team-replies", "orders", TRACE
    )


def trigger_tracked(
    store: IdempotencyStore, airflow: AirflowApi, dag_id: str, key: str | None = None
) -> tuple[str, TriggerResult]:
    """Trigger a real run for a new key and record it in the store as tracked, like the pipeline."""
    key = key or new_key()
    result = airflow.trigger(dag_id, run_id_for(key))
    store.record(
        key,
        fingerprint="fp",
        dag_id=dag_id,
        dag_run_id=result.dag_run_id,
        status=EntryStatus.TRIGGERED,
        run_state=result.state,
        logical_date=result.logical_date.isoformat() if result.logical_date else None,
        run_url=result.run_url,
        track=True,
        origin=origin_for(key),
    )
    return key, result


def entry(store: IdempotencyStore, key: str) -> StoredEntry:
    """The live entry of ``key``, which must exist."""
    found = store.get(key)
    assert found is not None
    return found
