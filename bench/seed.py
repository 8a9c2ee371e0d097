"""Seed an idempotency store as if the worker had already triggered a run for each key.

A large duplicate replay (100,000 or 200,000 requests) needs its keys answered before;
triggering them first would take Airflow an hour at its ceiling, and a replay makes no
Airflow call anyway. The entries are written through the store's own API with the
fingerprint the worker computes, so the worker answers each request ``duplicate``; any
store URL the worker takes works (SQLite file or PostgreSQL database).
"""

from __future__ import annotations

import json

from bench.rig import request_value
from consumer.fingerprint import fingerprint
from consumer.pipeline.validate import validate
from consumer.run_id import run_id_for
from consumer.settings import Settings
from consumer.store import EntryStatus, open_store

RETENTION = Settings.model_fields["dedup_retention"].default  # the worker's own


def seed_store(url: str, keys: list[str], dag_id: str) -> None:
    """Record a ``triggered`` entry for every key, as a request of ``request_value`` makes.

    Args:
        url: the store URL (``sqlite:///…`` or ``postgresql://…``).
        keys: the idempotency keys.
        dag_id: the DAG the requests name.
    """
    store = open_store(url, RETENTION)
    try:
        for key in keys:
            request = validate(json.loads(request_value(key, dag_id)))
            run_id = run_id_for(key)
            own = fingerprint(request)
            store.mark_pending(key, fingerprint=own, dag_id=dag_id, dag_run_id=run_id)
            store.record(
                key,
                fingerprint=own,
                dag_id=dag_id,
                dag_run_id=run_id,
                status=EntryStatus.TRIGGERED,
                run_state="queued",
            )
    finally:
        store.close()
