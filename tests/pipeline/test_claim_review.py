"""Adversarial review of commit aca95e2 (a resumer stamps the mark; its writer reads the stamp).

Driven like ``test_pipeline``'s two-owner test: owners of one record and another record of the
same key, against the devstack's real Airflow 3, one shared SQLite store.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from consumer.airflow import AirflowClient
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import FixedLimit
from consumer.errors import StoppingError
from consumer.limits import DEFAULT_LIMITS
from consumer.outcome import Outcome
from consumer.pipeline.pipeline import Admitted, Pipeline
from consumer.pipeline.policy import Policy
from consumer.record import InboundRecord
from consumer.store import IdempotencyStore, StoredEntry, open_store
from devstack.airflow import AirflowServer
from tests.airflow.conftest import connection_for
from tests.conftest import unique_name

POLICY = Policy.from_lists("*")


class _HeldRecord:
    """The shared store, with ``record`` held until the test lets it through."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store
        self.reached = threading.Event()  # record() was called: the POST is done
        self.go = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record(self, *args: Any, **kwargs: Any) -> StoredEntry:
        self.reached.set()
        assert self.go.wait(60), "the test never let the record through"
        return self._store.record(*args, **kwargs)


class _BeforeRecord:
    """The shared store, running ``before`` right before ``record``."""

    def __init__(self, store: IdempotencyStore, before: Any) -> None:
        self._store = store
        self._before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record(self, *args: Any, **kwargs: Any) -> StoredEntry:
        self._before()
        return self._store.record(*args, **kwargs)


def test_a_stamp_without_a_post_makes_the_writer_claim_another_records_run(
    tmp_path: Path, airflow3: AirflowServer
) -> None:
    """FAILS on aca95e2: a stamp alone makes its writer answer ``triggered`` for another's run.

    Record A (offset 68) and record B (offset 69) carry the same request (same key, same
    fingerprint). Interleaving:

    1. old owner of A writes the pending mark (NEW);
    2. new owner of A judges it RESUMED and stamps it (``resume_pending``), then loses the
       partition again (or stops, or crashes) before its POST: no POST for A from it;
    3. B (CLAIMED: A's mark holds the key) POSTs and makes the run (created): ``triggered``;
       its ``record`` has not run yet;
    4. old owner of A POSTs: 409. ``taken_over`` reads A's mark, pending and stamped, and
       answers ``triggered`` -- but B's POST made the run, and A's never did;
    5. B records ``triggered``; then A's ``record(triggered)`` (status triggered always
       overwrites) puts A's origin over B's entry.

    So two requests are answered ``triggered`` for one run, and B -- the request whose POST
    made the run -- is answered ``duplicate`` on re-delivery (the store now names A), and the
    run's ``completed`` reply would go to A's origin. Before aca95e2 A answered
    ``duplicate`` here (true). A stamp says only that a resumer *may* POST, not that it did.
    """
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", timedelta(days=1))
    described = airflow3.describe()
    admin, password = described["username"], SecretStr(described["password"])

    def owner(on: Any) -> Pipeline:
        return Pipeline(
            limits=DEFAULT_LIMITS,
            policy=POLICY,
            store=on,
            airflow=AirflowClient(connection_for(airflow3.url, username=admin, password=password)),
            gate=AirflowGate(threading.Event()),
            airflow_limit=FixedLimit(1),
        )

    key = unique_name("stamp-no-post")
    value = f'{{"idempotency_key": "{key}", "dag_id": "devstack_paused"}}'.encode()
    record_a = InboundRecord("requests", 0, 68, None, key.encode(), value)
    record_b = InboundRecord("requests", 0, 69, None, key.encode(), value)

    held = _HeldRecord(store)
    other = owner(held)  # the pipeline that runs record B
    answers: dict[str, Outcome] = {}
    errors: list[BaseException] = []

    def run_b() -> None:
        try:
            answers["b"] = other.execute(admitted(other, record_b))
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            errors.append(exc)
            held.reached.set()

    thread_b = threading.Thread(target=run_b)

    def b_records_first() -> None:  # old owner of A: after its look-up, before its record
        held.go.set()
        thread_b.join(60)

    old, new = owner(_BeforeRecord(store, b_records_first)), owner(store)

    def admitted(pipeline: Pipeline, record: InboundRecord) -> Admitted:
        (item,) = pipeline.triage([record], busy=lambda _key: False)
        assert isinstance(item, Admitted)
        return item

    asked: list[bool] = []

    def before_old_owners_post() -> bool:
        if not asked:
            asked.append(True)
            # the new owner of A stamps the mark, then loses the partition before its POST
            with pytest.raises(StoppingError):
                new.execute(admitted(new, record_a), owned=lambda: False)
            # B POSTs and makes the run; its record waits
            thread_b.start()
            assert held.reached.wait(60)
        return True

    answers["a"] = old.execute(admitted(old, record_a), owned=before_old_owners_post)
    held.go.set()
    thread_b.join(60)
    assert not errors, errors

    (again_b,) = other.triage([record_b], busy=lambda _key: False)
    assert isinstance(again_b, Outcome)
    store.close()

    statuses = (answers["b"].status.value, answers["a"].status.value, again_b.status.value)
    assert statuses == (
        "triggered",  # B's POST made the run
        "duplicate",  # A's never did: its new owner stamped the mark and never POSTed
        "triggered",  # B re-delivered: still the request that made the run
    )
