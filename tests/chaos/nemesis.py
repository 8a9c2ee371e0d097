"""Nemesis: a seeded schedule of faults, applied to the real processes while traffic flows.

``plan`` turns a seed into a timeline of faults (pure: the same seed and length give the
same schedule). ``Nemesis`` applies it: ``step`` starts and ends the faults that are due,
``heal`` ends them all at once. Every action goes into ``timeline`` with its time offset,
so a failure report shows what happened when.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from devstack import procs
from devstack.kafka import KafkaBroker
from tests.chaos.replicas import Fleet
from tests.chaos.targets import AirflowPath, StoreFaults

KILL = "kill_replica"  # SIGKILL; the harness restarts it
PAUSE = "pause_replica"  # SIGSTOP past the session timeout, then SIGCONT
ADD = "add_replica"  # one more replica: a rebalance
PAUSE_BROKER = "pause_broker"  # SIGSTOP the broker, then SIGCONT
RESTART_BROKER = "restart_broker"  # SIGTERM and start again, data kept
STOP_API = "stop_api"  # the Airflow API server stopped, then started again
FAIL_TRIGGERS = "fail_triggers"  # trigger POSTs answered 503 by the fault proxy
LOSE_RESPONSE = "lose_response"  # a POST Airflow accepted whose answer is lost (then 503s)
SLOW_AIRFLOW = "slow_airflow"  # each call to Airflow delayed
LOCK_STORE = "lock_store"  # the store locked by a side connection
READ_ONLY_STORE = "read_only_store"  # PostgreSQL: the store database read-only

FAULT_KINDS = (
    KILL,
    PAUSE,
    ADD,
    PAUSE_BROKER,
    RESTART_BROKER,
    STOP_API,
    FAIL_TRIGGERS,
    LOSE_RESPONSE,
    SLOW_AIRFLOW,
    LOCK_STORE,
    READ_ONLY_STORE,
)
# faults of one category never overlap; faults of different ones may
CATEGORY = {
    KILL: "replica",
    PAUSE: "replica",
    ADD: "fleet",
    PAUSE_BROKER: "broker",
    RESTART_BROKER: "broker",
    STOP_API: "api",
    FAIL_TRIGGERS: "proxy",
    LOSE_RESPONSE: "proxy",
    SLOW_AIRFLOW: "slow",
    LOCK_STORE: "store",
    READ_ONLY_STORE: "store",
}
WEIGHTS = {
    KILL: 14,
    PAUSE: 8,
    ADD: 5,
    PAUSE_BROKER: 6,
    RESTART_BROKER: 4,
    STOP_API: 6,
    FAIL_TRIGGERS: 10,
    LOSE_RESPONSE: 10,
    SLOW_AIRFLOW: 6,
    LOCK_STORE: 8,
    READ_ONLY_STORE: 8,
}
# seconds a fault lasts; SIGSTOPs outlast the worker's 10 s session timeout
DURATIONS = {
    KILL: (0.0, 0.0),
    PAUSE: (12.0, 20.0),
    ADD: (0.0, 0.0),
    PAUSE_BROKER: (12.0, 18.0),
    RESTART_BROKER: (0.0, 0.0),
    STOP_API: (8.0, 20.0),
    FAIL_TRIGGERS: (8.0, 25.0),
    LOSE_RESPONSE: (5.0, 15.0),
    SLOW_AIRFLOW: (10.0, 25.0),
    LOCK_STORE: (8.0, 20.0),
    READ_ONLY_STORE: (8.0, 20.0),
}
BUSY_AFTER = {RESTART_BROKER: 40.0}  # the category stays busy while the broker comes back
MAX_FAULTS = 1000
APPLY_ERRORS = (psycopg.Error, sqlite3.Error, OSError, procs.StackError, AssertionError)


@dataclass(frozen=True)
class Fault:
    """One planned fault: at ``at`` seconds, for ``duration``; ``target`` picks a replica."""

    at: float
    kind: str
    duration: float = 0.0
    target: int = 0
    option: bool = False  # LOSE_RESPONSE: 503s after the lost answer; SLOW_AIRFLOW: longer

    @property
    def ends(self) -> float:
        """When the fault is healed."""
        return self.at + self.duration


def plan(
    seed: int,
    seconds: float,
    *,
    kinds: frozenset[str] = frozenset(FAULT_KINDS),
    broker_restarts: int = 1,
    additions: int = 2,
) -> list[Fault]:
    """The seed's fault schedule over ``seconds``: one fault every 4-10 s, healed before the end.

    Args:
        seed: the schedule's seed.
        seconds: the length of the faulty period.
        kinds: the fault kinds allowed.
        broker_restarts: at most this many broker restarts.
        additions: at most this many replicas added.

    Returns:
        The faults by start time.
    """
    rng = random.Random(f"{seed}-nemesis")  # noqa: S311 -- a test schedule, not cryptography
    budget = {RESTART_BROKER: broker_restarts, ADD: additions}
    busy: dict[str, float] = {}
    faults: list[Fault] = []
    at = rng.uniform(3.0, 8.0)
    for _ in range(MAX_FAULTS):
        if at >= seconds - 3.0:
            break
        free = sorted(
            k
            for k in kinds
            if busy.get(CATEGORY[k], 0.0) <= at
            and budget.get(k, 1) > 0
            and at + DURATIONS[k][0] <= seconds - 1.0  # room for the whole fault
        )
        if free:
            kind = rng.choices(free, weights=[WEIGHTS[k] for k in free])[0]
            low, high = DURATIONS[kind]
            duration = round(min(rng.uniform(low, high), max(seconds - at - 1.0, 0.0)), 1)
            fault = Fault(round(at, 1), kind, duration, rng.randrange(3), rng.random() < 0.5)
            faults.append(fault)
            busy[CATEGORY[kind]] = fault.ends + BUSY_AFTER.get(kind, 2.0)
            if kind in budget:
                budget[kind] -= 1
        at += rng.uniform(4.0, 10.0)
    return faults


@dataclass(frozen=True)
class Moment:
    """One line of the timeline: what the nemesis did, when (seconds into the trial)."""

    at: float
    action: str  # start, end, note
    kind: str
    target: str = ""
    note: str = ""

    def __str__(self) -> str:
        """``+12.3s start pause_replica r1 (note)``."""
        note = f" ({self.note})" if self.note else ""
        return f"+{self.at:6.1f}s {self.action:5} {self.kind} {self.target}{note}".rstrip()


@dataclass
class Nemesis:
    """Applies a schedule of faults to the fleet, the broker, Airflow's path and the store."""

    schedule: list[Fault]
    fleet: Fleet
    broker: KafkaBroker
    airflow: AirflowPath
    store: StoreFaults
    started_at: float = field(default_factory=time.monotonic)
    timeline: list[Moment] = field(default_factory=list)
    _pending: list[Fault] = field(default_factory=list)
    _active: list[tuple[Fault, str]] = field(default_factory=list)
    _jobs: dict[str, Future[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Queue the schedule and a pool for slow actions (broker restart, API start)."""
        self._pending = sorted(self.schedule, key=lambda f: f.at)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nemesis")

    def elapsed(self) -> float:
        """Seconds since the trial began."""
        return time.monotonic() - self.started_at

    def note(self, action: str, kind: str, target: str = "", note: str = "") -> None:
        """Add a line to the timeline."""
        self.timeline.append(Moment(round(self.elapsed(), 1), action, kind, target, note))

    def step(self) -> bool:
        """End and start the faults that are due, and let the fleet restart killed replicas.

        Returns:
            Whether the schedule is over (nothing pending, nothing active).
        """
        now = self.elapsed()
        for fault, target in [a for a in self._active if a[0].ends <= now]:
            self._active.remove((fault, target))
            self._guarded(self._end, fault, target)
        while self._pending and self._pending[0].at <= now:
            fault = self._pending.pop(0)
            self._guarded(self._start, fault, "")
        self.fleet.supervise()
        return not self._pending and not self._active

    def _guarded(self, action: object, fault: Fault, target: str) -> None:
        try:
            action(fault, target)  # type: ignore[operator]
        except APPLY_ERRORS as exc:
            self.note("error", fault.kind, target, f"{exc.__class__.__name__}: {exc}"[:200])

    def _background(self, name: str, job: object) -> bool:
        running = self._jobs.get(name)
        if running is not None and not running.done():
            return False
        self._jobs[name] = self._pool.submit(job)  # type: ignore[arg-type]
        return True

    def _start(self, fault: Fault, _target: str) -> None:  # noqa: C901, PLR0912 -- one branch per kind
        target = ""
        kind = fault.kind
        if kind in (KILL, PAUSE):
            replica = self.fleet.pick(fault.target)
            target = replica.name
            if kind == KILL:
                self.fleet.kill(replica)
            else:
                self.fleet.pause(replica)
        elif kind == ADD:
            added = self.fleet.add()
            target = added.name if added else "(at the limit)"
        elif kind == PAUSE_BROKER:
            if not self._broker_idle():
                self.note("skip", kind, "broker", "broker restarting")
                return
            os.kill(self.broker.pid or 0, signal.SIGSTOP)
            target = "broker"
        elif kind == RESTART_BROKER:
            target = "broker"
            self._background("broker", lambda: self.broker.restart(tie_to_parent=True))
        elif kind == STOP_API:
            if not self._background("api", self.airflow.stop_api):
                self.note("skip", kind, "api", "API server still starting")
                return
        elif kind == FAIL_TRIGGERS:
            self.airflow.proxy.fail_triggers(503)
        elif kind == LOSE_RESPONSE:
            self.airflow.proxy.drop_next_trigger_response(then_fail=503 if fault.option else None)
            target = "then 503" if fault.option else ""
        elif kind == SLOW_AIRFLOW:
            self.airflow.slow.delay = 2.0 if fault.option else 0.5
            target = f"{self.airflow.slow.delay} s"
        elif kind == LOCK_STORE:
            self.store.lock()
        elif kind == READ_ONLY_STORE:
            self.store.read_only()
        self.note("start", kind, target, f"for {fault.duration} s" if fault.duration else "")
        if fault.duration:
            self._active.append((fault, target))

    def _broker_idle(self) -> bool:
        job = self._jobs.get("broker")
        return job is None or job.done()

    def _end(self, fault: Fault, target: str) -> None:
        kind = fault.kind
        if kind == PAUSE:
            for replica in self.fleet.replicas:
                if replica.name == target:
                    self.fleet.resume(replica)
        elif kind == PAUSE_BROKER:
            os.kill(self.broker.pid or 0, signal.SIGCONT)
        elif kind == STOP_API:
            self._wait_job("api")
            self._background("api", self.airflow.start_api)
        elif kind in (FAIL_TRIGGERS, LOSE_RESPONSE):
            self.airflow.proxy.heal()
        elif kind == SLOW_AIRFLOW:
            self.airflow.slow.delay = 0.0
        elif kind == LOCK_STORE:
            self.store.unlock()
        elif kind == READ_ONLY_STORE:
            self.store.writable()
        self.note("end", kind, target)

    def _wait_job(self, name: str, timeout: float = 240.0) -> None:
        job = self._jobs.get(name)
        if job is not None:
            job.result(timeout=timeout)

    def heal(self) -> None:
        """End every active fault, finish slow actions, and make sure everything runs again."""
        for fault, target in list(self._active):
            self._guarded(self._end, fault, target)
        self._active.clear()
        self._pending.clear()
        for name in list(self._jobs):
            try:
                self._wait_job(name)
            except APPLY_ERRORS as exc:
                self.note("error", name, "", f"{exc.__class__.__name__}: {exc}"[:200])
        if self.broker.pid is not None:
            os.kill(self.broker.pid, signal.SIGCONT)
        if self.broker.pid is None or not procs.alive(self.broker.pid):
            self.broker.start(tie_to_parent=True)
        self.airflow.heal()
        self.store.unlock()
        self.fleet.heal()
        self.note("heal", "everything")
        self._pool.shutdown(wait=False)
