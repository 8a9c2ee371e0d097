"""Trial: one seeded run of workload and nemesis against replicas, then quiescence and a record.

The order: topics and replicas up and ready; the feeder writes while the nemesis plays its
schedule; then everything is healed, the feeder stopped, and the system left to quiesce
(lag 0 and no new reply or dead letter for a while, tracked runs ended), within a deadline;
then the history is recorded. Faults never mask themselves: nothing is checked while one
is on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.airflow import AirflowServer
from devstack.kafka import KafkaBroker
from devstack.procs import free_port
from tests.chaos.checker import FINAL_STATES, Violation, summarize
from tests.chaos.history import History, list_runs, offsets, read_topic
from tests.chaos.nemesis import FAULT_KINDS, Moment, Nemesis, plan
from tests.chaos.producers import Feeder, Producers, Topics
from tests.chaos.replicas import Fleet, ReplicaFactory
from tests.chaos.targets import AirflowPath, StoreFaults
from tests.chaos.workload import TRAFFIC_KINDS, Workload
from tests.scenarios.harness import Topics as WorkerTopics
from tests.scenarios.harness import WorkerProcess, create_topics, worker_env
from tests.waiting import wait_until

REQUEST_PARTITIONS = 6
EVENT_PARTITIONS = 2
QUIET_SECONDS = 15.0  # no new reply or dead letter for this long: quiescent
QUIESCE_TIMEOUT = 240.0
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Plan:
    """What one trial does.

    Attributes:
        seed: seeds the workload, the schedule and the pacing.
        seconds: how long traffic flows under faults.
        store: ``postgres`` or ``sqlite``.
        replicas: replicas at the start (more may be added up to ``max_replicas``).
        max_replicas: the fleet's limit.
        faults: the fault kinds allowed.
        traffic: the traffic kinds allowed.
        pace: mean seconds between batches.
    """

    seed: int
    seconds: float
    store: str
    replicas: int = 1
    max_replicas: int = 1
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    traffic: frozenset[str] = frozenset(TRAFFIC_KINDS)
    pace: float = 1.0


@dataclass
class Stage:
    """The servers a trial runs on: the broker, Airflow (shared, and the trial's path), store."""

    broker: KafkaBroker
    airflow: AirflowServer
    path: AirflowPath
    store: StoreFaults
    store_url: str
    work: Path


StageFactory = Callable[[StoreFaults, str], Stage]
"""Given the store's faults and URL, the stage a trial runs on (a fixture)."""


@dataclass(frozen=True)
class Names:
    """A trial's token (the prefix of its keys, routes and topics), topics and group."""

    token: str
    topics: WorkerTopics
    events: str


@dataclass
class Outcome:
    """A trial's result: its history, timeline and some figures for the report."""

    plan: Plan
    token: str
    history: History
    timeline: list[Moment]
    figures: dict[str, object] = field(default_factory=dict)


def _replica_factory(stage: Stage, topics: WorkerTopics, routes: str) -> ReplicaFactory:
    """Replicas on the stage: the trial's topics, Airflow path, store, routes and a /readyz port."""

    def make(name: str) -> tuple[WorkerProcess, int]:
        port = free_port()
        env = worker_env(
            bootstrap=stage.broker.bootstrap_servers,
            airflow=stage.airflow,
            topics=topics,
            store=stage.work / f"{name}-unused.db",
            extra={
                "TRIGGER_CONSUMER_AIRFLOW_URL": stage.path.url,
                "TRIGGER_CONSUMER_STORE_URL": stage.store_url,
                "TRIGGER_CONSUMER_HTTP_PORT": str(port),
                "TRIGGER_CONSUMER_ROUTES": routes,
                "TRIGGER_CONSUMER_AIRFLOW_RETRY_BUDGET": "10s",
                "TRIGGER_CONSUMER_TRACK_POLL_INTERVAL": "1s",
            },
        )
        return WorkerProcess(env=env, log=stage.work / f"{name}.log"), port

    return make


def _all_ready(fleet: Fleet) -> bool:
    return all(status == 200 for status, _ in fleet.readiness().values())


def run(stage: Stage, trial: Plan) -> Outcome:
    """Run one trial on ``stage`` and record its history (the caller checks it)."""
    token = f"chaos{trial.seed}x{uuid.uuid4().hex[:6]}"
    topics = WorkerTopics(
        requests=f"{token}-requests", replies=f"{token}-replies", dlq=f"{token}-dlq", group=token
    )
    events = f"{token}-events"
    bootstrap = stage.broker.bootstrap_servers
    create_topics(
        bootstrap,
        (topics.requests, REQUEST_PARTITIONS),
        (events, EVENT_PARTITIONS),
        (topics.replies, 1),
        (topics.dlq, 1),
    )
    workload = Workload(trial.seed, token, trial.traffic)
    routes = json.dumps(workload.route_table(events))
    fleet = Fleet(_replica_factory(stage, topics, routes), limit=trial.max_replicas)
    figures: dict[str, object] = {}
    try:
        for _ in range(trial.replicas):
            fleet.add()
        wait_until(
            lambda: _all_ready(fleet), timeout=READY_TIMEOUT, interval=0.5, what="replicas ready"
        )
        schedule = plan(
            trial.seed,
            trial.seconds,
            kinds=trial.faults,
            additions=trial.max_replicas - trial.replicas,
        )
        nemesis = Nemesis(schedule, fleet, stage.broker, stage.path, stage.store)
        fleet.started_at = nemesis.started_at  # deaths on the timeline's clock
        producers = Producers(bootstrap, Topics(topics.requests, events), token)
        feeder = Feeder(workload, producers, trial.pace)
        feeder.start()
        try:
            wait_until(
                lambda: nemesis.step() and nemesis.elapsed() >= trial.seconds,
                timeout=trial.seconds + 600,
                interval=0.25,
                what="the fault schedule played",
            )
        finally:
            try:
                feeder.stop()
            finally:
                nemesis.heal()
        figures.update(
            batches=feeder.batches,
            written=dict(producers.written),
            failed_writes=dict(producers.failed),
            fault_seconds=round(nemesis.elapsed(), 1),
        )
        names = Names(token, topics, events)
        figures["quiesced"] = _quiesce(stage, names, fleet, nemesis)
        history = _record(stage, names, workload, fleet)
        figures["quiesced_after"] = round(nemesis.elapsed(), 1)
        return Outcome(trial, token, history, nemesis.timeline, figures)
    finally:
        fleet.close()


def _quiesce(stage: Stage, names: Names, fleet: Fleet, nemesis: Nemesis) -> bool:
    """Wait, within a deadline, until lag is 0, tracked runs ended and replies stop changing.

    Returns:
        Whether it got there (if not, the checker says what is missing).
    """
    bootstrap = stage.broker.bootstrap_servers
    topics, events = names.topics, names.events
    last: list[object] = [None, time.monotonic()]

    def quiet() -> bool:
        fleet.supervise()
        committed, ends = offsets(bootstrap, topics.group, [topics.requests, events])
        lagging = any(end and committed.get(tp) != end for tp, end in ends.items())
        _, outputs = offsets(bootstrap, topics.group, [topics.replies, topics.dlq])
        running = [
            r
            for r in list_runs(stage.airflow, names.token)
            if r.dag_id != "devstack_paused" and r.state not in FINAL_STATES
        ]
        snapshot = (lagging, sorted(outputs.items()), len(running))
        if snapshot != last[0]:
            last[:] = [snapshot, time.monotonic()]
            return False
        return not lagging and not running and time.monotonic() - float(last[1]) >= QUIET_SECONDS  # type: ignore[arg-type]

    try:
        wait_until(quiet, timeout=QUIESCE_TIMEOUT, interval=2.0, what="quiescence")
    except AssertionError:
        nemesis.note("note", "quiescence", "", f"not quiescent after {QUIESCE_TIMEOUT:.0f} s")
        return False
    nemesis.note("note", "quiescence", "", "lag 0, replies stable")
    return True


def _record(stage: Stage, names: Names, workload: Workload, fleet: Fleet) -> History:
    """Read back everything the checker needs."""
    bootstrap = stage.broker.bootstrap_servers
    topics, events = names.topics, names.events
    committed_records = [
        m for t in (topics.requests, events) for m in read_topic(bootstrap, t, committed_only=True)
    ]
    kept = {m.position for m in committed_records}
    everything = [
        m for t in (topics.requests, events) for m in read_topic(bootstrap, t, committed_only=False)
    ]
    committed, ends = offsets(bootstrap, topics.group, [topics.requests, events])
    return History(
        request_topic=topics.requests,
        event_topic=events,
        routes=workload.routes,
        requests=committed_records,
        aborted=[m for m in everything if m.position not in kept],
        replies=read_topic(bootstrap, topics.replies, committed_only=False),
        dead_letters=read_topic(bootstrap, topics.dlq, committed_only=False),
        runs=list_runs(stage.airflow, names.token),
        committed=committed,
        ends=ends,
        readiness=fleet.readiness(),
        deaths=[f"{d.replica} exit {d.code} at +{d.at:.0f}s: {d.tail}" for d in fleet.deaths],
        killed=dict(fleet.killed_pids),
    )


def report(outcome: Outcome, violations: list[Violation], minutes: float) -> str:
    """The failure message: seed, how to repeat it, the fault timeline and each violation."""
    trial = outcome.plan
    lines = [
        f"nemesis seed {trial.seed} on {trial.store}"
        f" ({trial.replicas}-{trial.max_replicas} replicas, {trial.seconds:.0f} s of faults),"
        f" token {outcome.token}",
        f"repeat: make chaos SEED={trial.seed} MINUTES={minutes:g}",
        f"figures: {outcome.figures}",
        f"history: {summarize(outcome.history)}",
        "fault timeline:",
        *(f"  {moment}" for moment in outcome.timeline),
        f"violated invariants ({len(violations)}):",
        *(f"  - {violation}" for violation in violations),
    ]
    return "\n".join(lines)
