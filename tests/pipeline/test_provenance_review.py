"""Adversarial review of b9a5fb3/0c56a30 (the run names the request that made it).

Driven like ``test_pipeline``'s two-owner test: records of one key against the devstack's
real Airflow 3, one shared SQLite store, fresh pipelines standing in for restarted workers.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from consumer.airflow import AirflowClient
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import FixedLimit
from consumer.limits import DEFAULT_LIMITS
from consumer.outcome import Outcome
from consumer.pipeline.pipeline import Admitted, Pipeline
from consumer.pipeline.policy import Policy
from consumer.record import InboundRecord
from consumer.run_id import run_id_for
from consumer.store import IdempotencyStore, StoredEntry, open_store
from devstack.airflow import AirflowServer
from tests.airflow.conftest import connection_for
from tests.conftest import unique_name

POLICY = Policy.from_lists("*")


class _Killed(BaseException):
    """The worker died here (``crash_here("after_trigger")``: the run exists, no record)."""


class _DiesBeforeRecord:
    """The shared store as a worker sees it that is killed right before its ``record``."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record(self, *args: Any, **kwargs: Any) -> StoredEntry:
        raise _Killed


def test_the_maker_killed_after_its_post_is_answered_triggered_on_redelivery(
    tmp_path: Path, airflow3: AirflowServer
) -> None:
    """FAILS on b9a5fb3: the maker's re-delivery is answered ``duplicate`` from the store.

    Records A (offset 70) and B (offset 71) carry the same request (same key, same
    fingerprint: a producer's re-send). Interleaving:

    1. A is judged NEW and writes the pending mark (origin A);
    2. B reads A's mark (CLAIMED), POSTs and makes the run: its conf names B; B's worker is
       killed right after the POST (the ``after_trigger`` crash point the nemesis arms), so
       B records nothing and sends no reply: B is delivered again;
    3. A POSTs: 409; the run names B, so A is ``duplicate`` (true) and records
       ``duplicate`` with origin A over its own pending mark (``may_overwrite``: same
       coordinates);
    4. B is delivered again. Triage reads A's final ``duplicate`` entry: same fingerprint,
       other coordinates, so KNOWN, answered ``duplicate`` from the store with no Airflow
       call -- the run, which names B, is never asked.

    So the request whose POST made the run is never answered ``triggered`` (and a tracked
    run's ``completed`` reply would go to A's origin, the duplicate). The run knows who made
    it, but A's ``duplicate`` turned the key's entry final under A's coordinates. (Before
    b9a5fb3 the same happened; the change promises this case: "this very record ...
    triggered".)

    Suggested fix: a request whose 409 names *another* request must not finalize the key
    while the live entry is still its own pending mark (leave the mark: B's re-delivery is
    then CLAIMED, POSTs, meets its own run and records ``triggered``); or keep the maker's
    coordinates from the run (``result.source``) in the entry so that ``judge`` sees B's
    re-delivery as the maker (OWN-made) rather than KNOWN.
    """
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", timedelta(days=1))
    described = airflow3.describe()
    admin, password = described["username"], SecretStr(described["password"])

    def worker(on: Any) -> Pipeline:
        return Pipeline(
            limits=DEFAULT_LIMITS,
            policy=POLICY,
            store=on,
            airflow=AirflowClient(connection_for(airflow3.url, username=admin, password=password)),
            gate=AirflowGate(threading.Event()),
            airflow_limit=FixedLimit(1),
        )

    key = unique_name("maker-killed")
    value = f'{{"idempotency_key": "{key}", "dag_id": "devstack_paused"}}'.encode()
    record_a = InboundRecord("requests", 0, 70, None, key.encode(), value)
    record_b = InboundRecord("requests", 0, 71, None, key.encode(), value)

    def answer(pipeline: Pipeline, record: InboundRecord, **kwargs: Any) -> Outcome:
        (item,) = pipeline.triage([record], busy=lambda _key: False)
        if isinstance(item, Outcome):
            return item
        assert isinstance(item, Admitted)
        return pipeline.execute(item, **kwargs)

    killed: list[bool] = []

    def b_posts_and_dies() -> bool:  # asked right before A's POST, A's mark written
        if not killed:
            try:
                answer(worker(_DiesBeforeRecord(store)), record_b)
            except _Killed:
                killed.append(True)
        return True

    first_a = answer(worker(store), record_a, owned=b_posts_and_dies)
    assert killed, "B's worker was not killed after its POST"
    run = airflow3.session().get(
        f"{airflow3.url}/api/v2/dags/devstack_paused/dagRuns/{run_id_for(key)}", timeout=30
    )
    source = run.json()["conf"]["trigger_consumer/source"]  # B's POST made the run
    assert (source["topic"], source["partition"], source["offset"]) == ("requests", 0, 71)
    assert first_a.status == "duplicate"

    again_b = answer(worker(store), record_b)  # B's worker restarted: B delivered again

    assert again_b.status == "triggered", "the request whose POST made the run"
    store.close()


def test_a_run_of_an_earlier_topic_incarnation_is_not_claimed_by_a_new_record(
    tmp_path: Path, airflow3: AirflowServer
) -> None:
    """FAILS on b9a5fb3 (low severity): coordinates outlive the topic and the store's entry.

    The topic ``requests`` was deleted and re-created (or the worker moved to a new Kafka
    cluster with the same topic names): offsets start at 0 again. Interleaving:

    1. in the old incarnation, the record at (requests, 0, 72) made ``kafka__K`` with conf
       ``{"n": 1}``; its conf names (requests, 0, 72);
    2. ``DEDUP_RETENTION`` (7 days) passes: the store forgets K (here: a fresh store);
    3. the new incarnation's record at (requests, 0, 72) carries K with conf ``{"n": 2}``:
       NEW, POST, 409, the run names (requests, 0, 72) == its coordinates: ``triggered``,
       recorded as the maker (its ``completed`` reply would follow a run of another conf).

    Before b9a5fb3 it was ``duplicate`` (NEW, nothing may have reached). A run lives as long
    as Airflow keeps it, far beyond the store's retention, so (topic, partition, offset) is no
    longer an identity only within the retention window (the store's OWN judgement is).

    Suggested fix: name the request more fully in the run: add its fingerprint (and the
    record's timestamp) to ``trigger_consumer/source`` and compare them too; a 409 whose run
    names another fingerprint could then even answer ``idempotency_key_reused`` after the
    store forgot the key.
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
    key = unique_name("reborn-topic")
    source = {"topic": "requests", "partition": 0, "offset": 72}
    made = airflow3.session().post(  # the old incarnation's run, as the worker made it
        f"{airflow3.url}/api/v2/dags/devstack_paused/dagRuns",
        json={
            "dag_run_id": run_id_for(key),
            "logical_date": None,
            "conf": {"n": 1, "trigger_consumer/source": source},
        },
        timeout=30,
    )
    assert made.ok, made.text
    value = f'{{"idempotency_key": "{key}", "dag_id": "devstack_paused", "conf": {{"n": 2}}}}'
    record = InboundRecord("requests", 0, 72, None, key.encode(), value.encode())

    (item,) = pipeline.triage([record], busy=lambda _key: False)
    assert isinstance(item, Admitted)
    outcome = pipeline.execute(item)

    assert outcome.status != "triggered", "a run of another request (conf {'n': 1})"
    store.close()
