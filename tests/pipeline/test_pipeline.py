"""Tests of consumer/pipeline/pipeline.py: triage's per-message boundary (no Airflow call)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from consumer.airflow import AirflowClient
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import FixedLimit
from consumer.contract import TriggerRequest
from consumer.fingerprint import fingerprint
from consumer.limits import DEFAULT_LIMITS
from consumer.outcome import Outcome
from consumer.pipeline.pipeline import Pipeline
from consumer.pipeline.policy import Policy
from consumer.pipeline.screen import screen
from consumer.record import InboundRecord
from consumer.run_id import run_id_for
from consumer.store import EntryStatus, open_store
from tests.airflow.conftest import connection_for

POLICY = Policy.from_lists("*")


def test_an_unreadable_stored_entry_is_an_internal_error_not_a_stopped_loop(
    tmp_path: Path,
) -> None:
    """A stored run whose logical date cannot be read: that request is answered internal_error.

    Judging the store's entries ran outside triage's per-message boundary, so the exception
    escaped the loop and stopped the worker (adversarial review).
    """
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", timedelta(days=1))
    value = b'{"idempotency_key": "k", "dag_id": "d"}'
    request = screen(value, DEFAULT_LIMITS, POLICY)
    assert isinstance(request, TriggerRequest)
    store.record(
        "k",
        fingerprint=fingerprint(request),
        dag_id="d",
        dag_run_id=run_id_for("k"),
        status=EntryStatus.TRIGGERED,
        logical_date="not a date",
    )
    pipeline = Pipeline(
        limits=DEFAULT_LIMITS,
        policy=POLICY,
        store=store,
        airflow=AirflowClient(connection_for("http://127.0.0.1:9")),
        gate=AirflowGate(threading.Event()),
        airflow_limit=FixedLimit(1),
    )
    record = InboundRecord("requests", 0, 3, None, b"k", value)

    (item,) = pipeline.triage([record], busy=lambda _key: False)

    assert isinstance(item, Outcome)
    assert item.status == "error"
    assert item.error_code == "internal_error"
