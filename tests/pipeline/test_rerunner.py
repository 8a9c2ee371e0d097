"""The Rerunner's decisions (issue 29) with a real SQLite store and scripted clears.

Each test names the adversarial review's finding it pins (they failed before the fixes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from consumer.airflow.clearing import RunClock
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import FixedLimit
from consumer.contract import Rerun, Status, TriggerRequest
from consumer.errors import AirflowError, ErrorCode
from consumer.fingerprint import fingerprint
from consumer.outcome import Outcome
from consumer.pipeline.rerun import Rerunner
from consumer.record import InboundRecord
from consumer.run_id import run_id_for
from consumer.store import (
    EntryStatus,
    IdempotencyStore,
    RequestOrigin,
    RerunStatus,
    StoredEntry,
    open_store,
)
from consumer.store.holds import StoreHold
from tests.faults.clearing import START, ScriptedClearing

KEY = "orders-7"
DAG = "devstack_flaky"


@pytest.fixture
def store() -> Iterator[IdempotencyStore]:
    """A fresh in-memory SQLite store."""
    opened = open_store("sqlite:///:memory:", timedelta(days=7))
    yield opened
    opened.close()


def _request(rerun_id: str = "fix-1", *, track: bool = False) -> TriggerRequest:
    return TriggerRequest(idempotency_key=KEY, dag_id=DAG, rerun=Rerun(id=rerun_id), track=track)


def _record(offset: int) -> InboundRecord:
    return InboundRecord("requests", 0, offset, None, KEY.encode(), b"{}", ())


def _entry(store: IdempotencyStore) -> StoredEntry:
    """The key's run, triggered at offset 1 and tracked to its end (failed)."""
    request = TriggerRequest(idempotency_key=KEY, dag_id=DAG, track=True)
    origin = RequestOrigin("requests", 0, 1, None)
    store.mark_pending(
        KEY, fingerprint=fingerprint(request), dag_id=DAG, dag_run_id=run_id_for(KEY), origin=origin
    )
    store.record(
        KEY,
        fingerprint=fingerprint(request),
        dag_id=DAG,
        dag_run_id=run_id_for(KEY),
        status=EntryStatus.TRIGGERED,
        run_state="failed",
        track=True,
        origin=origin,
    )
    store.mark_completed(KEY, "failed")
    entry = store.get(KEY)
    assert entry is not None
    return entry


def _rerunner(store: IdempotencyStore, clearing: ScriptedClearing) -> Rerunner:
    gate = AirflowGate(threading.Event(), probe=lambda: True)
    return Rerunner(store, clearing, gate, FixedLimit(4), StoreHold())


def _rerun(rerunner: Rerunner, entry: StoredEntry, offset: int, **fields: object) -> Outcome:
    record = _record(offset)
    request = _request(**fields)  # type: ignore[arg-type]  # rerun_id, track
    origin = RequestOrigin(record.topic, record.partition, record.offset, None)
    return rerunner.rerun(record, request, entry, origin, lambda: True)


def test_a_refused_clear_is_resumed_by_the_re_send(store: IdempotencyStore) -> None:
    """Finding 1: after a refusal the producer re-sends; the re-send clears, once."""
    clearing = ScriptedClearing()
    clearing.refusals.append(AirflowError(ErrorCode.AIRFLOW_REJECTED, "busy", {"attempts": 1}))
    rerunner, entry = _rerunner(store, clearing), _entry(store)
    first = _rerun(rerunner, entry, offset=5)
    resent = _rerun(rerunner, entry, offset=6)
    again = _rerun(rerunner, entry, offset=7)
    assert first.status is Status.ERROR
    assert (resent.status, again.status) == (Status.RERUN, Status.DUPLICATE)
    assert clearing.clears == 1


def test_an_unreadable_kept_clock_is_read_again(store: IdempotencyStore) -> None:
    """Finding 12: a pending mark whose clock is not one reads the run now, no crash."""
    clearing = ScriptedClearing()
    rerunner, entry = _rerunner(store, clearing), _entry(store)
    store.mark_rerun(KEY, "fix-1", evidence="{not json", at=("requests", 0, 5))
    outcome = _rerun(rerunner, entry, offset=5)
    assert outcome.status is Status.RERUN
    assert clearing.clears == 1


def test_a_resumed_rerun_whose_run_ended_again_stays_tracked(store: IdempotencyStore) -> None:
    """Finding 6: cleared, crashed, the run ended again: the re-delivery still tracks it."""
    clearing = ScriptedClearing()
    rerunner, entry = _rerunner(store, clearing), _entry(store)
    before = clearing.run
    store.mark_rerun(KEY, "fix-1", evidence=before.text(), at=("requests", 0, 5))
    ended = ScriptedClearing.cleared(before)  # cleared by the crashed worker, then ended
    clearing.run = RunClock("success", ended.queued_at, START + timedelta(minutes=2))
    outcome = _rerun(rerunner, entry, offset=5, track=True)
    tracked = store.get(KEY)
    assert outcome.status is Status.RERUN
    assert clearing.clears == 0
    assert tracked is not None
    assert (tracked.track, tracked.completed_at) == (True, None)


def test_nothing_to_clear_re_arms_no_tracking(store: IdempotencyStore) -> None:
    """Finding 11: only_failed with nothing failed: no ``completed`` is promised."""
    clearing = ScriptedClearing(RunClock("success", START, START))
    clearing.nothing_to_clear = True
    rerunner, entry = _rerunner(store, clearing), _entry(store)
    outcome = _rerun(rerunner, entry, offset=5, track=True)
    after = store.get(KEY)
    assert (outcome.status, outcome.run_state) == (Status.RERUN, "success")
    assert after is not None
    assert after.completed_at is not None  # still the first end's: nothing runs again


def test_an_unfinished_run_on_airflow_2_is_not_cleared(store: IdempotencyStore) -> None:
    """Finding 3: no ``queued_at`` and not finished: a clear would leave no trace."""
    clearing = ScriptedClearing(RunClock("running", None, START))
    rerunner, entry = _rerunner(store, clearing), _entry(store)
    outcome = _rerun(rerunner, entry, offset=5)
    assert outcome.status is Status.ERROR
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.AIRFLOW_REJECTED
    assert clearing.clears == 0
    assert store.get_rerun(KEY, "fix-1") is None  # nothing to resume: a re-send starts anew


def test_a_clear_does_not_count_as_a_run_made_for_others(store: IdempotencyStore) -> None:
    """Finding 10: clearing calls lift a hold but do not fail held triggers' budgets."""
    clearing = ScriptedClearing()
    rerunner, entry = _rerunner(store, clearing), _entry(store)
    began = time.monotonic()
    assert _rerun(rerunner, entry, offset=5).status is Status.RERUN
    assert not rerunner.gate.others_succeeded_since(began)


def test_a_rerun_request_that_made_the_first_run_is_triggered_again(
    store: IdempotencyStore,
) -> None:
    """Re-delivered after a crash between its trigger and noting its id: no clear."""
    clearing = ScriptedClearing()
    rerunner, entry = _rerunner(store, clearing), _entry(store)
    store.mark_rerun(KEY, "fix-1", evidence=None, at=("requests", 0, 1))  # before its POST
    record = _record(1)
    origin = RequestOrigin(record.topic, record.partition, record.offset, None)
    outcome = rerunner.rerun(record, _request(), entry, origin, lambda: True, made_by_it=True)
    mark = store.get_rerun(KEY, "fix-1")
    assert outcome.status is Status.TRIGGERED
    assert clearing.clears == 0
    assert mark is not None
    assert mark.status is RerunStatus.DONE  # the id is spent: a re-send elsewhere is duplicate
