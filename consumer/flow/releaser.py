"""The releaser: triggers and answers deferred requests as their DAG's flow allows (issue 30).

One replica at a time releases: it holds the store's flow lease (timed on the database
clock) and renews it right before each request it lets go, which is the fence. Each pass::

    DAGs with requests waiting ──► how many each may let go now:
        an operator released it (``deferred --release``) ──► all that wait
        not limited (only ``not_before`` waits) ────────────► all that are due
        ``max_queued_runs`` ─────────────────────────────────► the limit minus Airflow's
                                                                queued count (unknown: none)
        ``rate`` ────────────────────────────────────────────► one once its slot has come
        ``AIRFLOW_MAX_QUEUED_RUNS`` ─────────────────────────► shared by every DAG
    its due requests, oldest first ──► ``Pipeline.execute`` (never deferred again) ──► the
        Answerer; once the broker acknowledged the reply, the row is forgotten

A released request goes through the code that answers any other: claim (its own pending
mark, RESUMED), trigger (a 409 reads which request the run names), record, reply. A crash
between the acknowledged reply and forgetting the row sends that reply again (the stored
outcome): the limit tracking's ``completed`` reply has too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from consumer.answering import Answerer
from consumer.boundary import guarded
from consumer.contract import Status
from consumer.errors import ConfigError, StoppingError
from consumer.flow.config import FlowLimits
from consumer.flow.parking import Deferred, unparked
from consumer.flow.queued import EVERY_DAG, QueuedRuns
from consumer.flow.waiting import Waiting
from consumer.logs import bind_message
from consumer.outcome import Outcome
from consumer.pipeline.items import Admitted, Owned
from consumer.record import InboundRecord
from consumer.store import IdempotencyStore
from consumer.store.deferred import DeferredCount, DeferredRequest

log = structlog.get_logger(__name__)

LEASE_TTL = timedelta(seconds=20)
MAKES_A_RUN = frozenset({Status.TRIGGERED, Status.RERUN})  # a clear queues the run again
TICK = 1.0  # seconds between passes while requests wait (a queued count is this fresh)
MIN_WAIT = 0.02
BATCH = 500  # requests of one DAG let go in one pass at most
COUNTS_EVERY = 5.0  # seconds between reads of what waits, on a replica without the lease

Execute = Callable[[Admitted, Owned], "Outcome | Deferred"]


class Releaser:
    """Lets deferred requests go; every replica runs one, the lease holder releases."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        execute: Execute,
        answerer: Answerer,
        queued: QueuedRuns,
        limits: FlowLimits,
        waiting: Waiting,
        owner: str,
        stop: threading.Event,
        wake: threading.Event | None = None,
        on_counts: Callable[[list[DeferredCount], datetime], None] | None = None,
    ) -> None:
        """Prepare the releaser; nothing runs before ``start``.

        Args:
            store: where deferred requests wait.
            execute: ``Pipeline.execute`` for released requests.
            answerer: publishes each released request's answer.
            queued: Airflow's queued-run counts.
            limits: the flow limits.
            waiting: what waits, shared with the pipeline (back-pressure).
            owner: this replica's name in the lease.
            stop: set when the worker stops.
            wake: set to start a pass at once (``Flow.wake``: a request was deferred).
            on_counts: told each fresh read of what waits and the store's clock (metrics).
        """
        self._store = store
        self._execute = execute
        self._answerer = answerer
        self._queued = queued
        self._limits = limits
        self._waiting = waiting
        self._owner = owner
        self._stop = stop
        self._on_counts = on_counts
        self._wake = wake or threading.Event()
        self._lock = threading.Lock()
        self._answering: set[tuple[str, tuple[str, int, int]]] = set()
        self._answered: list[DeferredRequest] = []
        self._counts_read = 0.0
        self._thread = threading.Thread(target=self.run, name="releaser", daemon=True)
        # the lease outlives a release that waits on Airflow (a hold, a retry budget): renewed
        # on its own beat while held, not only between requests
        self._heartbeat = threading.Thread(target=self._keep_lease, name="lease", daemon=True)
        self._holding = False
        self.fatal: ConfigError | None = None

    def start(self) -> None:
        """Start releasing, and renewing the lease, in threads of their own."""
        self._thread.start()
        self._heartbeat.start()

    def join(self, timeout: float = 30.0) -> None:
        """After ``stop``: end the pass, forget what was answered, give the lease up.

        Rows whose replies the broker acknowledged are forgotten (answers in flight waited
        for up to ``timeout``): a row left to the next holder would be answered twice.
        """
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in (self._thread, self._heartbeat):
            if thread.is_alive():
                thread.join(max(deadline - time.monotonic(), 0.0))
        while True:
            self._forget_answered()
            with self._lock:
                settled = not self._answering
            if settled or time.monotonic() >= deadline:
                break
            time.sleep(0.05)  # acknowledgements arrive on the producer's thread
        try:
            self._store.drop_flow_lease(self._owner)
        except Exception:  # a store outage at shutdown: the lease expires by itself
            log.warning("flow_lease_not_dropped", exc_info=True)

    def _keep_lease(self) -> None:
        while not self._stop.wait(LEASE_TTL.total_seconds() / 4):
            if not self._holding:
                continue
            try:
                self._holding = self._store.take_flow_lease(self._owner, LEASE_TTL)
            except Exception:  # a store outage: the next beat tries again
                log.warning("flow_lease_not_renewed", exc_info=True)

    def run(self) -> None:
        """Pass after pass until the worker stops; a failing pass is logged and retried."""
        while not self._stop.is_set() and self.fatal is None:
            try:
                wait = self.release_once()
            except ConfigError as exc:
                self.fatal = exc
                return
            except Exception:
                log.exception("release_failed")
                wait = TICK
            self._wake.wait(max(wait, MIN_WAIT))
            self._wake.clear()

    def release_once(self) -> float:
        """One pass: let go what the limits allow; return the seconds until the next.

        Returns:
            How long to wait before the next pass (less when a rate slot comes sooner).
        """
        self._forget_answered()
        self._holding = self._store.take_flow_lease(self._owner, LEASE_TTL)
        if not self._holding:
            self._read_counts(every=COUNTS_EVERY)
            return TICK
        counts = self._read_counts(every=0.0)
        dags = sorted({count.dag_id for count in counts})
        if not dags:
            return TICK
        now = self._store.store_now()
        plan = _Plan(self._limits, self._queued, now, self._store.rate_next(dags))
        queues = {
            dag: deque(self._store.due_deferred(self._take(plan, dag), dag_id=dag)) for dag in dags
        }
        # one request per DAG in turn, the one waiting longest first: a room shared by every
        # DAG (AIRFLOW_MAX_QUEUED_RUNS) never goes to the first DAG by name alone
        while queues and not self._stop.is_set():
            for dag_id in sorted(queues, key=lambda dag: queues[dag][0].seq if queues[dag] else 0):
                queue = queues[dag_id]
                row = queue.popleft() if queue else None
                if row is None or not (row.released or plan.take(dag_id)):
                    del queues[dag_id]
                    continue
                if (row.key, row.at) in self._answering:
                    continue
                if not self._store.take_flow_lease(self._owner, LEASE_TTL):
                    self._holding = False
                    return TICK  # the lease moved on: its new holder releases
                if self._release(row):
                    self._made_run(plan, dag_id)
                self._forget_answered()
        return plan.wait()

    def _take(self, plan: _Plan, dag_id: str) -> int:
        """How many of the DAG's due requests to read: its room, or all an operator released."""
        room = plan.room(dag_id)
        if room is None:
            return BATCH
        if room > 0:
            return min(room + len(self._answering), BATCH)
        head = self._store.due_deferred(1, dag_id=dag_id)  # ``deferred --release`` lifts limits
        return BATCH if head and head[0].released else 0

    def _made_run(self, plan: _Plan, dag_id: str) -> None:
        """Count a run just made: Airflow's queued count and the DAG's next rate slot."""
        self._queued.made(dag_id)
        limit = self._limits.limit_for(dag_id)
        if limit is not None and limit.rate is not None:
            # one interval from when the run was made, on the store's clock: no catch-up, so
            # never more than the rate's count in any of its periods (review of 96b7b2d)
            following = self._store.store_now() + limit.rate.interval
            plan.next_slot(dag_id, following)
            self._store.set_rate_next(dag_id, following, self._owner)

    def _release(self, row: DeferredRequest) -> bool:
        """Execute and answer one deferred request; True when its POST made a run."""
        record = InboundRecord(
            row.topic, row.partition, row.offset, row.timestamp_ms, row.record_key, row.record_value
        )
        built = guarded(record, None, unparked, row)
        if isinstance(built, Outcome):  # a row that no longer reads (a bug): answered so
            self._answer(record, built, row)
            return False
        record, request = built
        admitted = Admitted(record, request, row.fingerprint, entry=None, current=False)
        with bind_message(record, request.idempotency_key, request.dag_id):
            try:
                outcome = guarded(record, request, self._execute, admitted, self._holds_lease)
            except StoppingError as exc:
                log.info("release_abandoned", reason=str(exc))  # the row stays: released later
                return False
            if isinstance(outcome, Deferred):  # pragma: no cover -- released requests never are
                return False
            if not self._holds_lease():
                # the lease ran out during the call: its new holder releases the row again
                # (the run names this request: triggered once, by that holder)
                log.info("release_abandoned", reason="flow lease lost during the release")
                return False
            self._answer(record, outcome, row)
        return outcome.status in MAKES_A_RUN

    def _answer(self, record: InboundRecord, outcome: Outcome, row: DeferredRequest) -> None:
        with self._lock:
            self._answering.add((row.key, row.at))
        self._answerer.answer(record, outcome, _RowClaim(self, row))

    def _holds_lease(self) -> bool:
        return not self._stop.is_set() and self._store.take_flow_lease(self._owner, LEASE_TTL)

    def settled(self, row: DeferredRequest, *, acknowledged: bool) -> None:
        """A released request's answer settled (``_RowClaim``): forget the row if it was sent.

        Called on the producer's thread: the row is forgotten on the releaser's own.
        """
        with self._lock:
            if acknowledged:
                self._answered.append(row)
            else:
                self._answering.discard((row.key, row.at))
        self._wake.set()

    def _forget_answered(self) -> None:
        with self._lock:
            answered, self._answered = self._answered, []
        for row in answered:
            try:
                self._store.forget_deferred(row.key, row.at)
            except Exception:  # kept: forgotten on a later pass (in-flight until then)
                log.warning("deferred_not_forgotten", exc_info=True)
                with self._lock:
                    self._answered.append(row)
                continue
            with self._lock:
                self._answering.discard((row.key, row.at))

    def _read_counts(self, every: float) -> list[DeferredCount]:
        if every and time.monotonic() - self._counts_read < every:
            return self._waiting.counts
        counts = self._store.deferred_counts()
        self._counts_read = time.monotonic()
        self._waiting.read(counts)
        if self._on_counts is not None:
            self._on_counts(counts, self._store.store_now())
        return counts


@dataclass
class _RowClaim:
    """A released request's claim: no offset, its row is what the answer settles."""

    releaser: Releaser
    row: DeferredRequest

    def done(self) -> None:
        """The answer was acknowledged: the row may be forgotten."""
        self.releaser.settled(self.row, acknowledged=True)

    def abandon(self) -> None:
        """No answer was published: the row stays and is released again."""
        self.releaser.settled(self.row, acknowledged=False)


class _Plan:
    """How many requests each DAG may let go in one pass, and when the next pass is due."""

    def __init__(
        self,
        limits: FlowLimits,
        queued: QueuedRuns,
        now: datetime,
        rate_next: dict[str, datetime],
    ) -> None:
        self._limits = limits
        self._queued = queued
        self._now = now
        self._rate_next = rate_next
        self._room: dict[str, int | None] = {}  # None: no bound
        self._every_dag: int | None = self._room_left(limits.airflow_max_queued_runs, EVERY_DAG)
        self._wait = TICK

    def room(self, dag_id: str) -> int | None:
        """How many more of ``dag_id``'s requests may go in this pass (None: no bound)."""
        if not self._limits.limited(dag_id):
            return None
        if dag_id not in self._room:
            self._room[dag_id] = self._dag_room(dag_id)
        room, every = self._room[dag_id], self._every_dag
        if room is None or every is None:
            return room if every is None else every
        return min(room, every)

    def take(self, dag_id: str) -> bool:
        """Count one request of ``dag_id`` going now; False when its room is spent."""
        room = self.room(dag_id)
        if room is not None and room <= 0:
            return False
        if self._room.get(dag_id) is not None:
            self._room[dag_id] = self._room[dag_id] - 1  # type: ignore[operator]
        if self._every_dag is not None and self._limits.limited(dag_id):
            self._every_dag -= 1
        return True

    def next_slot(self, dag_id: str, at: datetime) -> None:
        """The DAG's next rate slot is ``at``: the next pass comes no later."""
        self._rate_next[dag_id] = at
        self._wait = min(self._wait, (at - self._now).total_seconds())

    def wait(self) -> float:
        """Seconds until the next pass."""
        return self._wait

    def _dag_room(self, dag_id: str) -> int | None:
        limit = self._limits.limit_for(dag_id)
        if limit is None:
            return None
        room = self._room_left(limit.max_queued_runs, dag_id)
        if limit.rate is not None:
            due = self._rate_next.get(dag_id)
            if due is not None and due > self._now:
                self._wait = min(self._wait, (due - self._now).total_seconds())
                return 0
            room = 1 if room is None else min(room, 1)
        return room

    def _room_left(self, bound: int | None, dag_id: str) -> int | None:
        if bound is None:
            return None
        count = self._queued.count(dag_id)
        return 0 if count is None else max(bound - count, 0)
