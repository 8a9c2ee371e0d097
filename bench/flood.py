"""A flood for one limited DAG beside a steady load for another (issue 30, flow control).

The worker runs with ``max_queued_runs`` 20 for ``devstack_limited``, a paused DAG whose
runs stay queued. The bench plays Airflow's scheduler: each flood request's ``triggered``
reply names its run, and the bench ends those runs at a fixed pace (``PATCH`` to
``success``, ``--flood-drain`` per second, oldest reply first), so the queue drains at a
known rate and what is measured is the worker. Meanwhile ``devstack_paused`` gets a
steady 5 requests/s (open loop, latency from due time to reply), first alone for
``--flood-baseline`` seconds, then beside the flood until every flood request is answered.

Figures: the other DAG's latency during the flood beside its baseline; Airflow's queued
count for the flooded DAG sampled every 0.5 s (never above the limit: flagged if it is)
with a plot; each flood key ``triggered`` exactly once and as many runs as keys; worker
CPU per deferred request (net of the baseline's CPU rate); the store's deferred table at
its peak and after. ``flood-pg2`` runs the same on PostgreSQL with two replicas.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests

from bench.flood_report import FAMILY, LIMIT, FloodResult, note
from bench.flood_watch import FLOOD_DAG, Drain, FloodReplies, Sampler, Steady
from bench.process import ContenderProcess, wait_group_ready
from bench.procstat import Usage
from bench.rig import Rig, keys_for
from bench.run_end import RunEnder
from bench.traffic import produce_burst

WARMUP_SECONDS = 5.0  # the steady load's first seconds meet a cold worker: not counted
TAIL_SECONDS = 10.0  # after the last flood reply: steady replies come in, the store settles
STALL_SECONDS = 120.0  # no new flood reply for this long: the worker is stuck; stop waiting


def _metadata(rig: Rig) -> str:
    return rig.airflow.database_url.replace("+psycopg2", "")


def clear_dag(rig: Rig, tag: str | None = None) -> int:
    """Pause the flooded DAG and delete its runs; return how many were not this flood's.

    Before a flood (``tag`` None) the DAG must hold no queued run but a bench's: the
    flow tests use it too, and their runs would count against the limit.

    Raises:
        RuntimeError: queued runs of someone else's are there (a flow test may be running).
    """
    rig.airflow.session().patch(
        f"{rig.airflow.url}/api/{rig.airflow.api_version}/dags/{FLOOD_DAG}",
        json={"is_paused": True},
        timeout=30,
    ).raise_for_status()
    ours = "kafka\\_\\_bench-%" if tag is None else f"kafka\\_\\_{tag}-%"
    with psycopg.connect(_metadata(rig), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'queued' AND run_id NOT LIKE %s), "
            "count(*) FILTER (WHERE run_id NOT LIKE %s) FROM dag_run WHERE dag_id = %s",
            (ours, ours, FLOOD_DAG),
        ).fetchone()
        queued_foreign, foreign = row if row else (0, 0)
        if tag is None and queued_foreign:
            raise RuntimeError(
                f"{FLOOD_DAG} has {queued_foreign} queued runs not the bench's (a flow test may "
                "be running): run the flood when it is done"
            )
        conn.execute("DELETE FROM dag_run WHERE dag_id = %s AND state <> 'running'", (FLOOD_DAG,))
    return int(foreign)


def _runs_made(rig: Rig) -> int:
    with psycopg.connect(_metadata(rig)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dag_run WHERE dag_id = %s", (FLOOD_DAG,)
        ).fetchone()
    return int(row[0]) if row else 0


def _count_and_clear(rig: Rig, plan: Plan, tag: str) -> tuple[int, int]:
    """The flooded DAG's runs and those not this flood's, then none left; -1: not counted.

    The figures are taken by then: a failing count or clean-up must not lose them.
    """
    try:
        return _runs_made(rig), clear_dag(rig, tag)
    except (OSError, psycopg.Error, requests.RequestException) as exc:
        print(f"{plan.name}: runs not counted or left in {FLOOD_DAG}: {exc}", flush=True)
        return -1, 0


def _usage(processes: list[ContenderProcess]) -> float:
    return sum(process.usage().cpu_seconds for process in processes)


@dataclass(frozen=True)
class Plan:
    """One flood: its size, pace and store."""

    name: str
    n: int
    drain_rate: float
    baseline_seconds: float
    replicas: int = 1
    store_url: str | None = None  # PostgreSQL; None: a SQLite file


def run(rig: Rig, plan: Plan) -> FloodResult:
    """Start the worker(s), the baseline, then the flood; measure until every key answered.

    Raises:
        RuntimeError: the DAG is in use by someone else, or a worker did not start.
    """
    clear_dag(rig)
    slug = plan.name.replace(" ", "-").replace(",", "")
    topics = rig.topics(slug)
    tag = f"{rig.run_tag}-{slug}"
    flood_keys = keys_for(f"{tag}-flood", plan.n)
    store: Path | str = plan.store_url or rig.work / f"{slug}.db"
    extra = {
        "TRIGGER_CONSUMER_DAG_LIMITS": json.dumps([{"dags": [FLOOD_DAG], "max_queued_runs": LIMIT}])
    }
    if plan.store_url:
        extra["TRIGGER_CONSUMER_STORE_URL"] = plan.store_url
    envs = [rig.worker_env(topics, rig.work / f"{slug}.db", extra) for _ in range(plan.replicas)]
    ports = [int(env["TRIGGER_CONSUMER_HTTP_PORT"]) for env in envs]
    processes = [
        ContenderProcess("consumer", ["run"], env, rig.work / f"{slug}-{i + 1}.log")
        for i, env in enumerate(envs)
    ]
    replies = FloodReplies(rig, topics.replies, f"{tag}-flood-")
    ender = RunEnder(rig.airflow, FLOOD_DAG)
    drain = Drain(replies, ender, plan.drain_rate)
    steady = Steady(rig, topics.requests, tag)
    sampler = Sampler(rig, ports, store)
    try:
        wait_group_ready(processes, rig.partitions)
        replies.start()
        replies.ready.wait(timeout=60)
        for thread in (sampler, steady, drain):
            thread.start()
        time.sleep(WARMUP_SECONDS)
        cpu0, steady.phase = _usage(processes), "baseline"
        time.sleep(plan.baseline_seconds)
        cpu1, steady.phase = _usage(processes), "flood"
        flood_began = time.monotonic() - sampler.began
        produced = produce_burst(rig.bootstrap, topics.requests, flood_keys, FLOOD_DAG)
        with replies.lock:
            replies.last_flood_reply = time.monotonic()  # the stall clock starts with the flood
        _wait_flood(replies, plan)
        cpu2, cpu_span = _usage(processes), time.monotonic() - sampler.began - flood_began
        answered = [replies.first_ms[k] for k in flood_keys if k in replies.first_ms]
        flood_ms = max(answered) - min(produced.values()) if answered else 0
        steady.halt.set()
        time.sleep(TAIL_SECONDS)
        peak_rss = sum(process.usage().peak_rss_bytes for process in processes)
    finally:
        for watcher in (steady, drain, sampler, replies):
            watcher.halt.set()
        ender.close()
        for process in processes:
            process.stop()
    runs_made, foreign = _count_and_clear(rig, plan, tag)
    baseline, base_missing = steady.latencies("baseline", replies.first_ms)
    during, flood_missing = steady.latencies("flood", replies.first_ms)
    result = FloodResult(
        name=plan.name,
        family=FAMILY,
        n=plan.n,
        done=replies.flood_answered(),
        seconds=flood_ms / 1000,
        latencies=during,
        errors=plan.n - len(replies.triggered) + base_missing + flood_missing,
        usage=Usage(cpu2 - cpu1, peak_rss),
        replicas=plan.replicas,
        store="PostgreSQL" if plan.store_url else "SQLite",
        drain_rate=plan.drain_rate,
        baseline_latencies=baseline,
        samples=sampler.samples,
        flood_began=flood_began,
        triggered=replies.triggered,
        refused=replies.refused,
        runs_made=runs_made,
        foreign_runs=foreign,
        ended=len(ender.ended_ms),
        cpu_baseline=cpu1 - cpu0,
        cpu_span=cpu_span,
        baseline_seconds=plan.baseline_seconds,
    )
    result.note = note(result, base_missing + flood_missing)
    return result


def _wait_flood(replies: FloodReplies, plan: Plan) -> None:
    """Until every flood key answered, or no flood reply for ``STALL_SECONDS``, bounded."""
    deadline = time.monotonic() + 3 * plan.n / plan.drain_rate + 300
    while time.monotonic() < deadline and replies.flood_answered() < plan.n:
        time.sleep(0.5)
        with replies.lock:
            if time.monotonic() - replies.last_flood_reply > STALL_SECONDS:
                return
