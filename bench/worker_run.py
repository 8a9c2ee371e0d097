"""The Kafka contenders: the worker (adaptive, fixed, replaying), the naive loop, the passthrough.

Each runs as its own process on fresh topics: it joins, then the same burst of N requests
is produced and its replies are timed; CPU and peak RSS are read from /proc while it runs.
A backlog contender finds its requests queued before it starts, and is timed from its
first reply. A steady contender (``rate``) gets its requests at a fixed rate instead
(open loop, see ``bench.traffic``).

A contender may name a store URL (a PostgreSQL database of its own) and several
replicas: they run as processes in one consumer group, are measured once they split the
partitions, their CPU and peak RSS are summed, and each key's first reply counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import metrics_probe
from bench.process import ContenderProcess, wait_group_ready
from bench.procstat import Usage, current_rss
from bench.result import Result, from_replies
from bench.rig import Rig, Topics
from bench.seed import seed_store
from bench.traffic import Replies, drive, produce_burst, route_table

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
    store_url: str | None = None  # a store URL (PostgreSQL) instead of the SQLite ``store``
    replicas: int = 1  # worker processes in one consumer group
    rate: float | None = None  # steady load: requests per second (open loop) instead of a burst
    load_share: float | None = None  # that rate as a fraction of the API ceiling
    routed: bool = False  # application events on a route topic instead of trigger requests


def drive_timeout(n: int) -> float:
    """How long to wait for N replies: generous, but bounded (a collapse shows as unanswered)."""
    return max(180.0, n / 3)


def run(rig: Rig, contender: Contender) -> Result:
    """Start the contender, send its load, measure, stop it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", contender.name).strip("-")  # a legal topic name
    topics: Topics = rig.topics(slug)
    if contender.seeded:
        store = contender.store or rig.work / f"{slug}.db"
        seed_store(contender.store_url or f"sqlite:///{store}", contender.keys, contender.dag_id)
    queued = None
    if contender.queued:
        queued = produce_burst(rig.bootstrap, topics.requests, contender.keys, contender.dag_id)
    processes: list[ContenderProcess] = []
    ports: list[int] = []
    sampler = None
    try:
        _start(rig, contender, topics, slug, processes=processes, ports=ports)
        sampler = metrics_probe.LimitSampler(ports) if ports else None
        measured = _measure(
            rig, contender, topics, processes, ports=ports, sampler=sampler, queued=queued
        )
    finally:
        summaries = [process.stop() for process in processes]
    return _result(contender, measured, summaries, sampler)


def _start(
    rig: Rig,
    contender: Contender,
    topics: Topics,
    slug: str,
    *,
    processes: list[ContenderProcess],
    ports: list[int],
) -> None:
    """Start the contender's replicas, appending each to ``processes`` (and its port)."""
    store = contender.store or rig.work / f"{slug}.db"
    extra = dict(contender.env)
    if contender.store_url:
        extra["TRIGGER_CONSUMER_STORE_URL"] = contender.store_url
    if contender.routed:  # the "request" topic carries events; requests go unused
        extra["TRIGGER_CONSUMER_ROUTES"] = route_table(topics.requests, contender.dag_id)
        extra["TRIGGER_CONSUMER_REQUEST_TOPIC"] = f"{topics.requests}-plain"
    for replica in range(contender.replicas):
        env = rig.worker_env(topics, store, extra)
        if contender.module == "consumer":
            ports.append(int(env["TRIGGER_CONSUMER_HTTP_PORT"]))
        log = rig.work / (f"{slug}.log" if replica == 0 else f"{slug}-{replica + 1}.log")
        processes.append(
            ContenderProcess(
                contender.module,
                contender.args,
                env,
                log,
                profile=contender.profile if replica == 0 else None,
            )
        )


def _result(
    contender: Contender,
    measured: Measured,
    summaries: list[dict[str, Any]],
    sampler: metrics_probe.LimitSampler | None,
) -> Result:
    """The contender's figures from what ``_measure`` read and the processes' summaries."""
    sent, replies, usage, hits_retries, rss_at_ready = measured
    calls = None
    if all("airflow_calls" in summary for summary in summaries):
        calls = sum(summary["airflow_calls"] for summary in summaries)
    note = ""
    if sampler:
        # the worker's trigger_consumer_airflow_call_seconds is never observed, so calls are
        # the Airflow calls each reply reports (``attempts``, spec: "how many calls were made")
        calls = sum(replies.attempts.values())
        note = f"dedup hits {hits_retries[0]:.0f}, retries {hits_retries[1]:.0f}"
    if contender.replicas > 1:
        note += f"; {contender.replicas} replicas, CPU and RSS summed"
    concurrency = contender.concurrency
    series: list[tuple[float, float]] = []
    if (
        sampler
        and sampler.samples
        and contender.env.get("TRIGGER_CONSUMER_AIRFLOW_CONCURRENCY") != "fixed"
    ):
        concurrency = sampler.mean()
        series = list(zip(sampler.times, sampler.samples, strict=True))
        note += f"; limit mean {concurrency:.1f}, max {max(sampler.samples):.0f}"
    if contender.queued:
        note += f"; RSS at ready {rss_at_ready / MIB:.0f} MiB"
    result = from_replies(
        contender.name,
        contender.family,
        sent,
        replies,
        queued=contender.queued,
        airflow_calls=calls,
        usage=usage,
        concurrency=concurrency,
        note=note,
        load_share=contender.load_share,
        offered_rate=contender.rate,
    )
    result.limit_series = series
    return result


Measured = tuple[dict[str, int], Replies, Usage, tuple[float, float], int]


def _measure(
    rig: Rig,
    contender: Contender,
    topics: Topics,
    processes: list[ContenderProcess],
    *,
    ports: list[int],
    sampler: metrics_probe.LimitSampler | None,
    queued: dict[str, int] | None,
) -> Measured:
    """Wait for the processes to own the partitions, drive the load, read the figures."""
    if len(processes) > 1:
        wait_group_ready(processes, rig.partitions)
    else:
        processes[0].wait_ready()
    before, counters_before = _usage(processes), _counters(ports)
    if contender.queued:  # it began on the backlog at once: count from its start
        before, counters_before = Usage(0.0, 0), {}
    rss_at_ready = sum(current_rss(process.pid) for process in processes)
    if sampler:
        sampler.start()
    try:
        timeout = drive_timeout(len(contender.keys))
        if contender.rate:
            timeout += len(contender.keys) / contender.rate
        sent, replies = drive(
            rig.bootstrap,
            (topics.requests, topics.replies),
            contender.keys,
            contender.dag_id,
            timeout,
            queued=queued,
            rate=contender.rate,
            routed=contender.routed,
        )
        after, counters_after = _usage(processes), _counters(ports)
    finally:
        if sampler:
            sampler.halt.set()
    deltas = tuple(
        counters_after.get(name, 0) - counters_before.get(name, 0)
        for name in (metrics_probe.DEDUP_HITS, metrics_probe.RETRIES)
    )
    usage = Usage(after.cpu_seconds - before.cpu_seconds, after.peak_rss_bytes)
    return sent, replies, usage, (deltas[0], deltas[1]), rss_at_ready


def _usage(processes: list[ContenderProcess]) -> Usage:
    """CPU and peak RSS of the processes, summed."""
    usages = [process.usage() for process in processes]
    return Usage(sum(u.cpu_seconds for u in usages), sum(u.peak_rss_bytes for u in usages))


def _counters(ports: list[int]) -> dict[str, float]:
    """The workers' metrics, summed over the replicas."""
    totals: dict[str, float] = {}
    for port in ports:
        for name, value in metrics_probe.scrape(port).items():
            totals[name] = totals.get(name, 0.0) + value
    return totals
