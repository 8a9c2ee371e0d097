"""The Kafka contenders: the worker (adaptive, fixed, replaying), the naive loop, the passthrough.

Each runs as its own process on fresh topics: it joins, then the same burst of N requests
is produced and its replies are timed; CPU and peak RSS are read from /proc while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench import metrics_probe
from bench.process import ContenderProcess
from bench.procstat import Usage
from bench.result import Result, from_replies
from bench.rig import Rig, Topics
from bench.traffic import drive


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


def drive_timeout(n: int) -> float:
    """How long to wait for N replies: generous, but bounded (a collapse shows as unanswered)."""
    return max(180.0, n / 3)


def run(rig: Rig, contender: Contender) -> Result:
    """Start the contender, send its burst, measure, stop it."""
    slug = contender.name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
    topics: Topics = rig.topics(slug)
    store = contender.store or rig.work / f"{slug}.db"
    env = rig.worker_env(topics, store, contender.env)
    port = int(env["TRIGGER_CONSUMER_HTTP_PORT"]) if contender.module == "consumer" else None
    process = ContenderProcess(
        contender.module, contender.args, env, rig.work / f"{slug}.log", profile=contender.profile
    )
    sampler = metrics_probe.LimitSampler(port) if port else None
    try:
        process.wait_ready()
        before, counters_before = process.usage(), _counters(port)
        if sampler:
            sampler.start()
        sent, replies = drive(
            rig.bootstrap,
            (topics.requests, topics.replies),
            contender.keys,
            contender.dag_id,
            drive_timeout(len(contender.keys)),
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
    return from_replies(
        contender.name,
        contender.family,
        sent,
        replies,
        airflow_calls=calls,
        usage=Usage(after.cpu_seconds - before.cpu_seconds, after.peak_rss_bytes),
        concurrency=concurrency,
        note=note,
    )


def _counters(port: int | None) -> dict[str, float]:
    return metrics_probe.scrape(port) if port else {}
