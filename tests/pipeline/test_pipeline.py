"""Tests of consumer/pipeline/pipeline.py: triage's per-message boundary (no Airflow call)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from consumer.airflow import AirflowClient
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import FixedLimit
from consumer.contract import TriggerRequest
from consumer.fingerprint import fingerprint
from consumer.limits import DEFAULT_LIMITS
from consumer.outcome import Outcome
from consumer.pipeline.pipeline import Admitted, Pipeline
from consumer.pipeline.policy import Policy
from consumer.pipeline.screen import screen
from consumer.record import InboundRecord
from consumer.run_id import run_id_for
from consumer.store import EntryStatus, RequestOrigin, open_store
from devstack.airflow import AirflowServer
from tests.airflow.conftest import connection_for
from tests.conftest import unique_name

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


def test_a_refused_record_delivered_again_after_its_key_moved_on_is_refused_the_same(
    tmp_path: Path, airflow3: AirflowServer
) -> None:
    """Nemesis seed 303: refused (404), key released, taken by a corrected request, crash.

    The refused record came back (its offset was not committed) while the key held the
    corrected request's pending mark: it was answered ``idempotency_key_reused`` after
    ``dag_not_found``, two answers to one request. Its refusal is remembered now.
    """
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", timedelta(days=1))
    described = airflow3.describe()
    admin, password = described["username"], SecretStr(described["password"])
    pipeline = Pipeline(
        limits=DEFAULT_LIMITS,
        policy=POLICY,
        store=store,
        airflow=AirflowClient(connection_for(airflow3.url, username=admin, password=password)),
        gate=AirflowGate(threading.Event()),
        airflow_limit=FixedLimit(1),
    )
    key = unique_name("moved-on")
    refused = f'{{"idempotency_key": "{key}", "dag_id": "devstack_missing"}}'.encode()
    corrected = f'{{"idempotency_key": "{key}", "dag_id": "devstack_plain"}}'.encode()
    first = InboundRecord("requests", 0, 3, None, key.encode(), refused)

    def answer(record: InboundRecord) -> Outcome:
        (item,) = pipeline.triage([record], busy=lambda _key: False)
        if isinstance(item, Outcome):
            return item
        assert isinstance(item, Admitted)
        return pipeline.execute(item)

    before = answer(first)
    request = screen(corrected, DEFAULT_LIMITS, POLICY)
    assert isinstance(request, TriggerRequest)
    store.mark_pending(  # the corrected request at offset 4 claimed the key, then a crash
        key,
        fingerprint=fingerprint(request),
        dag_id="devstack_plain",
        dag_run_id=run_id_for(key),
        origin=RequestOrigin("requests", 0, 4, None),
    )
    again = answer(first)

    assert (before.status, before.error_code) == ("error", "dag_not_found")
    assert (again.status, again.error_code) == ("error", "dag_not_found")
    store.close()


def test_the_writer_of_a_mark_whose_record_another_owner_resumed_answers_triggered(
    tmp_path: Path, airflow3: AirflowServer
) -> None:
    """Nemesis seeds 1313 and 1515: two owners of one record (a partition moved mid-work).

    The old owner wrote the pending mark (NEW); before its POST, the new owner judged the
    mark RESUMED and its POST made the run. The old owner's POST then met the run (409) and
    it answered ``duplicate`` (and stored it): a request that made its run, never answered
    ``triggered``. The run's conf names the request that made it now (consumer/provenance.py).
    """
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", timedelta(days=1))
    described = airflow3.describe()
    admin, password = described["username"], SecretStr(described["password"])

    def owner() -> Pipeline:
        return Pipeline(
            limits=DEFAULT_LIMITS,
            policy=POLICY,
            store=store,
            airflow=AirflowClient(connection_for(airflow3.url, username=admin, password=password)),
            gate=AirflowGate(threading.Event()),
            airflow_limit=FixedLimit(1),
        )

    old, new = owner(), owner()
    key = unique_name("two-owners")
    value = f'{{"idempotency_key": "{key}", "dag_id": "devstack_paused"}}'.encode()
    record = InboundRecord("requests", 0, 68, None, key.encode(), value)

    def admitted(pipeline: Pipeline) -> Admitted:
        (item,) = pipeline.triage([record], busy=lambda _key: False)
        assert isinstance(item, Admitted)
        return item

    answers: list[Outcome] = []

    def new_owner_runs_first() -> bool:  # asked right before the old owner's POST
        if not answers:
            answers.append(new.execute(admitted(new)))
        return True

    answers.append(old.execute(admitted(old), owned=new_owner_runs_first))

    assert [answer.status for answer in answers] == ["triggered", "triggered"]
    entry = store.get(key)
    assert entry is not None and entry.status is EntryStatus.TRIGGERED
    run = airflow3.session().get(
        f"{airflow3.url}/api/v2/dags/devstack_paused/dagRuns/{run_id_for(key)}", timeout=30
    )
    source = run.json()["conf"]["trigger_consumer/source"]  # the run names its maker
    assert (source["topic"], source["partition"], source["offset"]) == ("requests", 0, 68)
    assert source["fingerprint"] == entry.fingerprint
    store.close()
