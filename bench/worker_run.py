"""The Kafka contenders: the worker (adaptive, fixed, replaying), the naive loop, the passthrough.

Each runs as its own process on fresh topics: it joins, then the same burst of N requests
is produced and its replies are timed; CPU and peak RSS are read from /proc while it runs.
A backlog contender finds its requests queued before it starts, and is timed from its
first reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bench import metrics_probe
from bench.process import ContenderProcess
from bench.procstat import Usage, current_rss
from bench.result import Result, from_replies
from bench.rig import Rig, Topics
from bench.seed import seed_store
from bench.traffic import drive, produce_burst

MIB = 1024 * 1024


@dataclass(frozen=True)
class Contender:
    """How to start one Kafka contender and what to send it."""

    name: str
    family: str
    module: str
    keys: list[str]
    dag_id: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    store: Path | None = None
    concurrency: float | None = None
    profile: Path | None = None  # where py-spy writes collapsed stacks of this run
    queued: bool = False  # the requests are produced before the contender starts (a backlog)
    seeded: bool = False  # the store already knows every key: each request is a duplicate


def drive_timeout(n: int) -> float:
    """How long to wait for N replies: generous, but bounded (a collapse shows as unanswered)."""
    return max(180.0, n / 3)


def run(rig: Rig, contender: Contender) -> Result:
    """Start the contender, send its burst, measure, stop it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", contender.name).strip("-")  # a legal topic name
    topics: Topics = rig.topics(slug)
    store = contender.store or rig.work / f"{slug}.db"
    if contender.seeded:
        seed_store(store, contender.keys, contender.dag_id)
    queued = None
    if contender.queued:
        queued = produce_burst(rig.bootstrap, topics.requests, contender.keys, contender.dag_id)
    env = rig.worker_env(topics, store, contender.env)
    port = int(env["TRIGGER_CONSUMER_HTTP_PORT"]) if contender.module == "consumer" else None
    process = ContenderProcess(
        contender.module, contender.args, env, rig.work / f"{slug}.log", profile=contender.profile
    )
    sampler = metrics_probe.LimitSampler(port) if port else None
    try:
        process.wait_ready()
        before, counters_before = process.usage(), _counters(port)
        if contender.queued:  # it began on the backlog at once: count from its start
            before, counters_before = Usage(0.0, 0), {}
        rss_at_ready = current_rss(process.pid)
        if sampler:
            sampler.start()
        sent, replies = drive(
            rig.bootstrap,
            (topics.requests, topics.replies),
            contender.keys,
            contender.dag_id,
            drive_timeout(len(contender.keys)),
            queued=queued,
        )
        after, counters_after = process.usage(), _counters(port)
    finally:
        if sampler:
            sampler.halt.set()
        summary = process.stop()
    calls = summary.get("airflow_calls")
    note = ""
    if port:
        # the worker's trigger_consumer_airflow_call_seconds is never observed, so calls are
        # the Airflow calls each reply reports (``attempts``, spec: "how many calls were made")
        calls = sum(replies.attempts.values())
        hits = counters_after.get(metrics_probe.DEDUP_HITS, 0) - counters_before.get(
            metrics_probe.DEDUP_HITS, 0
        )
        retries = counters_after.get(metrics_probe.RETRIES, 0) - counters_before.get(
            metrics_probe.RETRIES, 0
        )
        note = f"dedup hits {hits:.0f}, retries {retries:.0f}"
    concurrency = contender.concurrency
    if (
        sampler
        and sampler.samples
        and contender.env.get("TRIGGER_CONSUMER_AIRFLOW_CONCURRENCY") != "fixed"
    ):
        concurrency = sampler.mean()
        note += f"; limit mean {concurrency:.1f}, max {max(sampler.samples):.0f}"
    if contender.queued:
        note += f"; RSS at ready {rss_at_ready / MIB:.0f} MiB"
    return from_replies(
        contender.name,
        contender.family,
        sent,
        replies,
        queued=contender.queued,
        airflow_calls=calls,
        usage=Usage(after.cpu_seconds - before.cpu_seconds, after.peak_rss_bytes),
        concurrency=concurrency,
        note=note,
    )


def _counters(port: int | None) -> dict[str, float]:
    return metrics_probe.scrape(port) if port else {}
