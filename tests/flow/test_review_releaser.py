"""Adversarial review of flow control (issue 30): the releaser, its lease and its plan.

Each test is a reproduction of a way a deferred request is doubled, mislabelled or held
past a promise; they fail against the code they were written for (commit 96b7b2d plus the
working tree's pipeline/worker wiring). Pure: a fake Airflow that keeps runs by id (a
second POST of a run id answers 409 with the run's conf, as Airflow does), real SQLite
stores (two objects on one file stand for two replicas), a fake answerer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumer.airflow.clearing import Clocked, RunClock
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import FixedLimit
from consumer.airflow.runs import TriggerResult
from consumer.flow.config import FlowLimits
from consumer.flow.parking import Deferred, Flow
from consumer.flow.queued import EVERY_DAG
from consumer.flow.releaser import Releaser
from consumer.flow.waiting import Waiting
from consumer.limits import DEFAULT_LIMITS
from consumer.outcome import Outcome
from consumer.pipeline.items import Admitted
from consumer.pipeline.pipeline import Pipeline
from consumer.pipeline.policy import Policy
from consumer.provenance import source_of
from consumer.record import InboundRecord
from consumer.store import EntryStatus
from consumer.store.sqlite import SqliteStore
from tests.store.stores import RETENTION, ManualClock
from tests.waiting import wait_until

POLICY = Policy(dag_patterns=("*",), rerun_patterns=("*",))
LIMITED = FlowLimits.build([{"dags": ["limited"], "max_queued_runs": 5}])


class FakeAirflow:
    """Runs by id; a POST of an existing run id is Airflow's 409 (the run, not created)."""

    def __init__(self) -> None:
        """Set the fake up."""
        self.runs: dict[str, Mapping[str, Any]] = {}
        self.posts: list[str] = []
        self.on_post: Callable[[], None] | None = None  # run once, inside the next POST

    def trigger(
        self,
        dag_id: str,
        run_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | None = None,
        note: str | None = None,
    ) -> TriggerResult:
        """Fake ``trigger``."""
        self.posts.append(run_id)
        hook, self.on_post = self.on_post, None
        if hook is not None:
            hook()  # the POST is in flight meanwhile
        existing = self.runs.get(run_id)
        created = existing is None
        if created:
            self.runs[run_id] = existing = dict(conf or {})
        return TriggerResult(
            dag_id,
            run_id,
            "queued",
            None,
            f"http://airflow/{dag_id}/{run_id}",
            source=source_of(existing),
            created=created,
            dag_paused=None,
            attempts=1 if created else 2,
        )

    def probe_trigger(self) -> bool:
        """Fake ``probe_trigger``."""
        return True

    def close(self) -> None:
        """Fake ``close``."""
        pass


class FakeQueued:
    """Airflow's queued counts, fixed by the test (``made`` is ignored: a draining scheduler)."""

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        """Set the fake up."""
        self.counts = counts or {}

    def count(self, dag_id: str = EVERY_DAG) -> int | None:
        """Fake ``count``."""
        return self.counts.get(dag_id, 0)

    def made(self, dag_id: str) -> None:
        """Fake ``made``."""
        pass


@dataclass
class FakeAnswerer:
    """Keeps each answer; acknowledges at once unless told to keep the claims open."""

    ack: bool = True
    answers: list[tuple[InboundRecord, Outcome]] = field(default_factory=list)
    claims: list[Any] = field(default_factory=list)
    on_answer: Callable[[], None] | None = None

    def answer(self, record: InboundRecord, outcome: Outcome, claim: Any, **_: Any) -> None:
        """Fake ``answer``."""
        self.answers.append((record, outcome))
        if self.on_answer is not None:
            self.on_answer()
        if self.ack:
            claim.done()
        else:
            self.claims.append(claim)


@dataclass
class Replica:
    """One replica's store object, pipeline and releaser over a shared database and Airflow."""

    store: SqliteStore
    pipeline: Pipeline
    releaser: Releaser
    answerer: FakeAnswerer
    stop: threading.Event


def replica(
    path: Path,
    airflow: FakeAirflow,
    owner: str,
    *,
    clock: Callable[[], datetime] | None = None,
    limits: FlowLimits = LIMITED,
    queued: FakeQueued | None = None,
    clearing: Any = None,
) -> Replica:
    """One replica (store, pipeline, releaser) on the shared database and Airflow."""
    store = SqliteStore(path, RETENTION, clock=clock)
    stop = threading.Event()
    waiting = Waiting(1000)
    pipeline = Pipeline(
        limits=DEFAULT_LIMITS,
        policy=POLICY,
        store=store,
        airflow=airflow,  # type: ignore[arg-type]
        gate=AirflowGate(stop),
        airflow_limit=FixedLimit(4),
        flow=Flow(limits, waiting),
        clearing=clearing,
    )
    answerer = FakeAnswerer()
    releaser = Releaser(
        store,
        execute=lambda admitted, owned: pipeline.execute(admitted, owned, released=True),
        answerer=answerer,  # type: ignore[arg-type]
        queued=queued or FakeQueued(),  # type: ignore[arg-type]
        limits=limits,
        waiting=waiting,
        owner=owner,
        stop=stop,
    )
    return Replica(store, pipeline, releaser, answerer, stop)


def submit(pipeline: Pipeline, value: str, offset: int) -> Outcome | Deferred:
    """Triage and execute one record of ``requests``/0 as the worker loop would."""
    record = InboundRecord("requests", 0, offset, None, b"k", value.encode())
    (item,) = pipeline.triage([record], busy=lambda _key: False)
    if isinstance(item, Outcome):
        return item
    assert isinstance(item, Admitted)
    return pipeline.execute(item)


def answers_of(*replicas: Replica) -> list[tuple[int, str]]:
    """Every (offset, status) these replicas answered."""
    return [
        (record.offset, outcome.status) for r in replicas for record, outcome in r.answerer.answers
    ]


# -- 1. the lease expires while the holder's POST is in flight ------------------------------


def test_a_release_outliving_the_lease_is_not_released_again_by_the_next_holder(
    tmp_path: Path,
) -> None:
    """A release outliving the lease is not released again by the next holder.

    Replica 1 renews the lease, then its POST takes longer than LEASE_TTL (20 s; one
    retry budget is AIRFLOW_RETRY_BUDGET, 2 min, with a 30 s read timeout; a hold at the
    gate renews nothing until a budget fails). Replica 2 takes the expired lease, finds
    the row still there and releases it too: its POST creates the run, replica 1's meets
    the run naming this very request (409) and is ``triggered`` as well. Two replies.
    """
    clock = ManualClock()
    airflow = FakeAirflow()
    first = replica(tmp_path / "s.db", airflow, "replica-1", clock=clock)
    second = replica(tmp_path / "s.db", airflow, "replica-2", clock=clock)
    deferred = submit(first.pipeline, '{"idempotency_key": "k1", "dag_id": "limited"}', 1)
    assert isinstance(deferred, Deferred)

    def slow_post() -> None:  # replica 1's POST outlives its lease; replica 2 passes
        clock.advance(timedelta(seconds=21))
        second.releaser.release_once()

    airflow.on_post = slow_post
    first.releaser.release_once()

    assert len(airflow.runs) == 1
    assert answers_of(first, second) == [(1, "triggered")], "one request, one reply"


def test_rows_answered_before_a_long_release_are_not_answered_again_by_the_next_holder(
    tmp_path: Path,
) -> None:
    """Rows answered before a long release are not answered again by the next holder.

    Same root: replica 1 answered row 1 (acknowledged, but forgotten only at its next
    pass), then row 2's POST outlives the lease. Replica 2 takes the lease and releases
    row 1 again: its entry is TRIGGERED by this very record (OWN), answered again.
    """
    clock = ManualClock()
    airflow = FakeAirflow()
    first = replica(tmp_path / "s.db", airflow, "replica-1", clock=clock)
    second = replica(tmp_path / "s.db", airflow, "replica-2", clock=clock)
    for offset, key in ((1, "k1"), (2, "k2")):
        value = f'{{"idempotency_key": "{key}", "dag_id": "limited"}}'
        assert isinstance(submit(first.pipeline, value, offset), Deferred)

    def second_post_is_slow() -> None:
        def slow() -> None:
            clock.advance(timedelta(seconds=21))
            second.releaser.release_once()

        airflow.on_post = slow

    airflow.on_post = second_post_is_slow  # the first POST arms the second's delay
    first.releaser.release_once()

    replies = answers_of(first, second)
    assert sorted(replies) == [(1, "triggered"), (2, "triggered")], replies


# -- 2. a clean stop leaves acknowledged rows unforgotten ------------------------------------


def test_a_clean_stop_forgets_every_row_whose_reply_was_acknowledged(tmp_path: Path) -> None:
    """A clean stop forgets every row whose reply was acknowledged.

    SIGTERM during a pass: the loop ends at ``stop`` with no last ``_forget_answered``
    (it runs only at the start of a pass) and ``join`` drops the lease. The rows answered
    in the last pass stay; the next holder answers them again (OWN: ``triggered`` again).
    Not the named limit (a replica killed between the acknowledgement and forgetting): a
    rolling restart of the lease holder does it. In the worker, ``Answerer.close`` (the
    producer's flush, when the last acknowledgements arrive) even runs after the join.
    """
    airflow = FakeAirflow()
    first = replica(tmp_path / "s.db", airflow, "replica-1")
    value = '{"idempotency_key": "k1", "dag_id": "limited"}'
    assert isinstance(submit(first.pipeline, value, 1), Deferred)
    first.answerer.on_answer = first.stop.set  # SIGTERM arrives while the pass runs

    first.releaser.start()
    wait_until(lambda: first.answerer.answers, timeout=10, what="the release")
    first.releaser.join(5)
    second = replica(tmp_path / "s.db", airflow, "replica-2")
    second.releaser.release_once()

    assert answers_of(first, second) == [(1, "triggered")], "one request, one reply"


# -- 3. AIRFLOW_MAX_QUEUED_RUNS: the shared room goes to the first DAG by name ---------------


def test_the_shared_queued_bound_does_not_starve_a_dag_behind_another_by_name(
    tmp_path: Path,
) -> None:
    """The shared queued bound does not starve a dag behind another by name.

    With AIRFLOW_MAX_QUEUED_RUNS every DAG is limited and shares one room per pass.
    DAGs are visited in name order and each takes what room is left, so while ``a_flood``
    has a backlog, ``b_steady`` gets nothing, even its request that waited first (the
    scheduler drains one queued run per pass: room 1 each pass).
    """
    limits = FlowLimits.build([], airflow_max_queued_runs=10)
    queued = FakeQueued({EVERY_DAG: 9})  # one free place per pass
    airflow = FakeAirflow()
    first = replica(tmp_path / "s.db", airflow, "replica-1", limits=limits, queued=queued)
    submit(first.pipeline, '{"idempotency_key": "b1", "dag_id": "b_steady"}', 1)
    for offset in range(2, 6):
        value = f'{{"idempotency_key": "a{offset}", "dag_id": "a_flood"}}'
        assert isinstance(submit(first.pipeline, value, offset), Deferred)

    for _ in range(3):
        first.releaser.release_once()

    released = [record.offset for record, _ in first.answerer.answers]
    assert 1 in released, f"b_steady's request (first to wait) is still waiting: {released}"


# -- 4. rate: the catch-up lets two runs through one interval --------------------------------


def test_a_rate_of_one_an_hour_never_lets_two_runs_through_within_an_hour(
    tmp_path: Path,
) -> None:
    """A rate of one an hour never lets two runs through within an hour.

    ``Rate.interval``: "never more than ``count`` in any period". A slot missed by less
    than one interval was caught up from the missed slot, not from the run: 1/hour, a run at
    10:00 (next slot 11:00), an idle DAG until 11:59 (run; next slot 12:00), a request at
    12:00 (run). Two runs one minute apart.
    """
    clock = ManualClock(datetime(2026, 1, 1, 10, tzinfo=UTC))
    limits = FlowLimits.build([{"dags": ["r"], "rate": "1/hour"}])
    airflow = FakeAirflow()
    first = replica(tmp_path / "s.db", airflow, "replica-1", clock=clock, limits=limits)
    for offset, at in (
        (1, timedelta(0)),
        (2, timedelta(hours=1, minutes=59)),
        (3, timedelta(minutes=1)),
    ):
        clock.advance(at)
        value = f'{{"idempotency_key": "k{offset}", "dag_id": "r"}}'
        assert isinstance(submit(first.pipeline, value, offset), Deferred)
        first.releaser.release_once()

    assert [record.offset for record, _ in first.answerer.answers] == [1, 2], "k3 waits"


# -- 5. not_before: a duplicate overtakes the request it duplicates --------------------------


def test_a_duplicate_of_a_not_before_request_is_answered_duplicate_not_triggered(
    tmp_path: Path,
) -> None:
    """A duplicate of a not before request is answered duplicate not triggered.

    A waits for its ``not_before``. Its time comes; before the releaser's pass (up to a
    TICK, or as long as the lease holder is busy with other rows, or 20 s after a holder
    died) B, a re-send of A (same key and body), arrives: its DAG is not limited and its
    ``not_before`` has passed, so it is not deferred; CLAIMED, it POSTs and makes the run
    (``triggered``). A is released next and answered ``duplicate``. The promise: "a
    duplicate of a deferred key waits and is answered duplicate once the run exists".
    """
    airflow = FakeAirflow()
    first = replica(tmp_path / "s.db", airflow, "replica-1", limits=FlowLimits())
    not_before = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    value = f'{{"idempotency_key": "k1", "dag_id": "plain", "not_before": "{not_before}"}}'
    assert isinstance(submit(first.pipeline, value, 1), Deferred)
    time.sleep(0.7)

    resent = submit(first.pipeline, value, 2)
    first.releaser.release_once()
    (original,) = [outcome for record, outcome in first.answerer.answers if record.offset == 1]

    assert len(airflow.runs) == 1
    assert (original.status, getattr(resent, "status", "deferred")) != ("duplicate", "triggered")
    assert original.status == "triggered", "the request that waited made its run"


# -- 6. a re-run of a limited DAG's run is not deferred -------------------------------------


@dataclass
class FakeClearing:
    """A finished run on Airflow 3: clearing it puts it back in the queue."""

    cleared: list[str] = field(default_factory=list)

    def clock(self, dag_id: str, run_id: str) -> Clocked:
        """Fake ``clock``."""
        ended = datetime(2026, 1, 1, tzinfo=UTC)
        return Clocked(RunClock("success", ended, ended), 1)

    def ensure_cleared(
        self, dag_id: str, run_id: str, before: RunClock, *, only_failed: bool, owned: Any
    ) -> Clocked:
        """Fake ``ensure_cleared``."""
        self.cleared.append(run_id)
        return Clocked(RunClock("queued", datetime.now(UTC), None), 1, cleared=True)


def test_a_rerun_of_a_limited_dag_waits_for_its_limit_like_a_new_run(tmp_path: Path) -> None:
    """A rerun of a limited dag waits for its limit like a new run.

    A re-run (issue 29) clears the key's run: Airflow queues it again. Its key has a
    final entry, so ``execute`` answers it in ``_answered`` before ``_defer`` is asked: a
    flood of re-runs of a DAG at ``max_queued_runs`` puts every cleared run in the queue.
    """
    airflow = FakeAirflow()
    clearing = FakeClearing()
    first = replica(tmp_path / "s.db", airflow, "replica-1", clearing=clearing)
    value = '{"idempotency_key": "k1", "dag_id": "limited"}'
    assert isinstance(submit(first.pipeline, value, 1), Deferred)
    first.releaser.release_once()
    assert first.store.get("k1").status is EntryStatus.TRIGGERED  # type: ignore[union-attr]

    rerun = '{"idempotency_key": "k1", "dag_id": "limited", "rerun": {"id": "again"}}'
    outcome = submit(first.pipeline, rerun, 2)

    assert clearing.cleared == [], "cleared (queued again) past the DAG's limit"
    assert isinstance(outcome, Deferred)
