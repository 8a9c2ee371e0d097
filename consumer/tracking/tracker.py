"""CompletionTracker: the ``completed`` follow-up reply of requests with ``track`` (spec §2).

A request with ``track: true`` gets its usual reply at once and, when its DAG run reaches
a final state, a second reply with status ``completed`` (error ``run_failed`` when the run
failed). The runs to watch live in the idempotency store, so tracking survives a restart
and, on a shared store, the replica that made the run::

    store.lease_tracked(owner) ─► EndedRunWindow.ended (one listing) ─► renew ─► ended?
        yes ─► fence: still the lease holder? ─► publish ─► mark_completed (ends the lease)
        no ──► past the horizon: abandon_tracking (log line, no reply)
               else: look again at the next poll

The leased runs' states come from one listing per poll of what ended since the previous
one (a page per 100 ended runs), whatever the number of tracked runs (``window.py``). An
Airflow without the list endpoint is asked run by run (``get_run``), each run's checks
backing off from the poll interval.

Each replica leases the runs it watches for a few poll intervals, least recently leased
first so that every run gets its turn, and renews the leases while a poll works; each
publish is fenced on its run's lease (``lease.py``). A run is watched by one live replica
at a time, and by another once its holder stops renewing (SIGKILL, or stalled past its
lease: the stalled one then publishes nothing for it). A clean stop releases the leases.

Delivery is at least once: an entry is marked completed only after ``publish`` returned
(the broker acknowledged), so a crash in between sends the reply again, never loses it.

Past the horizon tracking stops without a reply: ``completed`` would claim the run
finished, and no error code of spec §2 means "stopped watching" (``airflow_unavailable``
means a request's retries ran out). The producer still has the run's ``run_url``; the
operator sees a ``tracking_abandoned`` log line and ``TrackerCounts.abandoned``.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeAlias

import structlog

from consumer.airflow import AirflowApi, DagRun
from consumer.errors import AirflowError, ConfigError, StoreUnavailableError
from consumer.outcome import Outcome, RunView
from consumer.settings import default_of
from consumer.store import Clock, IdempotencyStore, RequestOrigin, StoredEntry
from consumer.tracking.completion import completed_outcome
from consumer.tracking.lease import PUBLISH_BOUND, Completion, LeaseKeeper
from consumer.tracking.schedule import CheckSchedule
from consumer.tracking.window import EndedRunWindow

log = structlog.get_logger(__name__)

Publish: TypeAlias = Callable[[Outcome, RequestOrigin | None], None]
"""Sends a ``completed`` outcome as a reply, echoing the stored origin's route and trace
context in its headers; returns once the broker acknowledged, else raises."""

_Check: TypeAlias = tuple[StoredEntry, bool, dict[str, DagRun] | None]
"""One run to look at: its entry, whether past the horizon, the window's ended runs (None:
ask Airflow for this run alone)."""

# kept in Settings: it cannot import them from here (tracker → consumer.airflow → Settings)
DEFAULT_INTERVAL: float = default_of("track_poll_interval").total_seconds()
DEFAULT_HORIZON: timedelta = default_of("track_horizon")
DEFAULT_CONCURRENCY: int = default_of("track_concurrency")
DEFAULT_MAX_DELAY_FACTOR = 12  # a long run is checked at least every 12 intervals (1 min)
DEFAULT_BATCH = 10_000  # entries leased per poll: 10,000 tracked runs all looked at each poll
LEASE_INTERVALS = 4  # a lease outlives this many polls: a slow poll never loses its runs
MIN_LEASE = timedelta(seconds=10)
FINAL_RUN_STATES = frozenset({"success", "failed"})


@dataclass(frozen=True)
class TrackerCounts:
    """What a tracker did since it was built, for metrics and tests.

    Attributes:
        checks: Airflow look-ups of tracked runs.
        completed: ``completed`` replies published (and marked in the store).
        abandoned: runs given up on past the horizon.
        errors: checks or publishes that failed and will be retried.
    """

    checks: int = 0
    completed: int = 0
    abandoned: int = 0
    errors: int = 0


class CompletionTracker:
    """Watches tracked DAG runs and publishes their ``completed`` replies.

    Runs on its own daemon thread (``start``/``join``) until ``stop`` is set, handling at
    most ``concurrency`` runs at once. Each poll looks at every leased run through the
    window of ended runs (one listing); an Airflow without the list endpoint is asked run
    by run, each run first at once, then after ``interval`` seconds, backing off by
    doubling up to ``max_delay``. A ``ConfigError``
    from Airflow (credentials refused, TLS) stops tracking and is logged as critical;
    nothing else stops it.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        airflow: AirflowApi,
        publish: Publish,
        *,
        stop: threading.Event,
        interval: float = DEFAULT_INTERVAL,
        horizon: timedelta = DEFAULT_HORIZON,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_delay: float | None = None,
        batch: int = DEFAULT_BATCH,
        clock: Clock | None = None,
        owner: str | None = None,
        lease_ttl: timedelta | None = None,
        publish_bound: timedelta = PUBLISH_BOUND,
    ) -> None:
        """Prepare the tracker; nothing is read or sent before ``poll_once`` or ``start``.

        Args:
            store: the idempotency store that lists tracked runs.
            airflow: the Airflow client that reads run states.
            publish: sends one ``completed`` outcome, given the entry's origin for its
                headers, and returns once acknowledged.
            stop: set it to stop the tracking thread (the worker's stop flag).
            interval: seconds between polls, and before a run's second check.
            horizon: how long after its request a run is tracked.
            concurrency: at most this many runs are checked at once.
            max_delay: run by run, the longest wait between two checks of one run; by
                default ``DEFAULT_MAX_DELAY_FACTOR`` intervals.
            batch: at most this many tracked entries are leased per poll.
            clock: the wall clock the horizon is measured with; UTC system time by default.
            owner: this process's lease owner id; host, pid and a random part by default.
            lease_ttl: how long a lease lasts unless renewed; by default
                ``LEASE_INTERVALS`` intervals, at least ``MIN_LEASE``.
            publish_bound: the longest ``publish`` takes before it returns or raises
                (the sink's ack timeout): the fence before it holds the run's lease longer.

        Raises:
            ValueError: ``interval``, ``horizon``, ``concurrency`` or ``batch`` is not positive.
        """
        if interval <= 0 or horizon <= timedelta(0) or concurrency < 1 or batch < 1:
            raise ValueError(
                "tracking needs a positive interval, horizon, concurrency and batch; got "
                f"{interval}, {horizon}, {concurrency}, {batch}"
            )
        self._store = store
        self._airflow = airflow
        self._publish = publish
        self._stop = stop
        self._interval = interval
        self._horizon = horizon
        self._concurrency = concurrency
        self._max_delay = (
            max_delay if max_delay is not None else interval * DEFAULT_MAX_DELAY_FACTOR
        )
        self._batch = batch
        self._clock = clock or partial(datetime.now, UTC)
        self._owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        lease = lease_ttl or max(timedelta(seconds=interval * LEASE_INTERVALS), MIN_LEASE)
        self._leases = LeaseKeeper(store, self._owner, lease, publish_bound=publish_bound)
        self._lock = threading.Lock()
        self._schedule = CheckSchedule(self._interval, self._max_delay)
        self._window = EndedRunWindow(airflow, self._clock)
        self._listable = True  # False once Airflow answered that it cannot list DAG runs
        self._counts = TrackerCounts()
        self._fatal: ConfigError | None = None
        self._thread: threading.Thread | None = None

    @property
    def counts(self) -> TrackerCounts:
        """What the tracker did so far."""
        with self._lock:
            return self._counts

    @property
    def owner(self) -> str:
        """The id this tracker leases tracked runs under."""
        return self._owner

    @property
    def fatal(self) -> ConfigError | None:
        """The configuration error that stopped tracking, or None."""
        return self._fatal

    def start(self) -> None:
        """Run ``run`` on a daemon thread named ``completion-tracker``."""
        self._thread = threading.Thread(target=self.run, name="completion-tracker", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the tracking thread to end (set ``stop`` first).

        Args:
            timeout: seconds to wait at most; None waits for ever.

        Returns:
            Whether the thread ended (or was never started).
        """
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        """Poll each ``interval`` until ``stop`` is set or a ``ConfigError`` occurs; never raise."""
        log.info(
            "tracking_started",
            interval=self._interval,
            horizon_seconds=self._horizon.total_seconds(),
            concurrency=self._concurrency,
        )
        while not self._stop.is_set():
            try:
                self.poll_once()
            except ConfigError as exc:
                self._fatal = exc
                log.critical("tracking_stopped_configuration_error", error=str(exc))
                return
            except Exception:  # the loop's boundary: a store or code fault waits a poll
                log.exception("tracking_poll_failed")
            if self._stop.wait(self._interval):
                break
        self._leases.release_all()
        log.info("tracking_stopped")

    def poll_once(self) -> int:
        """Look at every leased tracked run once; publish and mark those that reached a final state.

        Returns:
            How many ``completed`` replies were published.

        Raises:
            ConfigError: Airflow refused the credentials or TLS failed.
        """
        now = self._clock()
        leased = self._leases.take(self._batch)
        marked = self._mark_published()
        if self._listable:
            try:
                ended = self._window.ended(leased)
            except AirflowError as exc:  # the next poll's listing covers this one's window
                log.warning("tracking_list_failed", code=str(exc.code), error=exc.message)
                self._count(errors=1)
                return 0
            self._leases.renew_if_due()  # the listing may have outlasted the leases
            if ended is not None:
                if leased:
                    self._count(checks=1)
                jobs = [(entry, self._past_horizon(entry, now), ended) for entry in leased]
                checked = [job for job in jobs if job[1] or job[0].key in ended]
                return marked + self._run_checks(checked)
            self._listable = False
            log.info("tracking_run_by_run", reason="Airflow has no list endpoint for DAG runs")
        return marked + self._run_checks(self._due_run_by_run(leased, now))

    def _mark_published(self) -> int:
        """Mark first the runs whose reply was acknowledged but not marked (a store outage).

        Marking needs no Airflow call, so an Airflow outage does not delay it; every moment
        it stays unmarked is one in which a lease lost (a pause, an expiry) would let another
        replica send that reply again (nemesis seed 909).
        """
        marked = 0
        for key, state in self._leases.published().items():
            if not self._leases.holds(key):
                continue
            try:
                completion = self._leases.complete(key, state, _sent)
            except StoreUnavailableError as exc:  # still out: the next poll marks it
                log.warning("tracking_mark_failed", error=str(exc))
                return marked
            if completion is Completion.MARKED:
                self._schedule.forget(key)
                self._count(completed=1)
                marked += 1
        return marked

    def _due_run_by_run(self, leased: list[StoredEntry], now: datetime) -> list[_Check]:
        """The leased runs due for a look of their own (``get_run``), backing off per run."""
        self._schedule.keep_only({entry.key for entry in leased})
        due = [(entry, self._past_horizon(entry, now), None) for entry in leased]
        return [job for job in due if job[1] or self._schedule.is_due(job[0].key)]

    def _past_horizon(self, entry: StoredEntry, now: datetime) -> bool:
        return now - entry.created_at > self._horizon

    def _run_checks(self, jobs: Sequence[_Check]) -> int:
        if not jobs:
            return 0
        with ThreadPoolExecutor(
            min(self._concurrency, len(jobs)), thread_name_prefix="completion-check"
        ) as pool:
            return sum(pool.map(lambda job: self._check(*job), jobs))

    def _check(self, entry: StoredEntry, last: bool, ended: dict[str, DagRun] | None) -> int:
        origin = entry.origin
        with structlog.contextvars.bound_contextvars(
            idempotency_key=entry.key,
            dag_id=entry.dag_id,
            topic=origin.topic if origin else None,
            partition=origin.partition if origin else None,
            offset=origin.offset if origin else None,
        ):
            try:
                return self._check_entry(entry, last=last, ended=ended)
            except ConfigError:
                raise
            except AirflowError as exc:
                log.warning("tracking_check_failed", code=str(exc.code), error=exc.message)
            except Exception:  # the per-run boundary: a refused publish delays this run only
                log.exception("tracking_check_failed")
            self._count(errors=1)
            self._schedule.postpone(entry.key)
            return 0

    def _check_entry(
        self, entry: StoredEntry, *, last: bool, ended: dict[str, DagRun] | None
    ) -> int:
        self._leases.renew_if_due()
        if not self._leases.holds(entry.key):  # another replica took it over: it is theirs
            return self._lost(entry.key, "check")
        state = self._leases.published_state(entry.key)  # acknowledged, not yet marked
        publish: Callable[[], None] = _sent
        if state is None:
            run: RunView | None
            if ended is not None:  # the window of ended runs answered for every leased run
                run = ended.get(entry.key)
            else:
                run = self._airflow.get_run(entry.dag_id, entry.dag_run_id)
                self._count(checks=1)
            if run is None or run.state not in FINAL_RUN_STATES:
                if last:  # past the horizon: this was the last look
                    self._abandon(entry)
                else:
                    self._schedule.postpone(entry.key)
                return 0
            state = run.state
            publish = partial(self._publish, completed_outcome(entry, run), entry.origin)
        # spec §3 Delivery: marked only once the reply is acknowledged; a crash re-sends it
        completion = self._leases.complete(entry.key, state, publish)
        if completion is Completion.LOST:  # taken over while this poll worked: no reply
            return self._lost(entry.key, "publish")
        if completion is Completion.TAKEN_OVER:
            log.warning("tracking_lease_lost_during_publish", dag_run_id=entry.dag_run_id)
        self._schedule.forget(entry.key)
        self._count(completed=1)
        log.info("tracked_run_completed", dag_run_id=entry.dag_run_id, run_state=state)
        return 1

    def _abandon(self, entry: StoredEntry) -> None:
        if not self._leases.abandon(entry.key):  # another replica holds it now and decides
            self._lost(entry.key, "abandon")
            return
        self._schedule.forget(entry.key)
        self._count(abandoned=1)
        log.warning(
            "tracking_abandoned",
            idempotency_key=entry.key,
            dag_id=entry.dag_id,
            dag_run_id=entry.dag_run_id,
            run_state=entry.run_state,
            horizon_seconds=self._horizon.total_seconds(),
        )

    def _lost(self, key: str, stage: str) -> int:
        log.info("tracking_lease_lost", stage=stage)
        self._schedule.forget(key)
        return 0

    def _count(
        self, *, checks: int = 0, completed: int = 0, abandoned: int = 0, errors: int = 0
    ) -> None:
        with self._lock:
            counts = self._counts
            self._counts = TrackerCounts(
                checks=counts.checks + checks,
                completed=counts.completed + completed,
                abandoned=counts.abandoned + abandoned,
                errors=counts.errors + errors,
            )


def _sent() -> None:
    """A reply acknowledged before: nothing to send again."""
