"""Completion tracking at scale (issue 16): N tracked runs, each ended by the bench.

The issue's goal: of 10,000 tracked runs, each ``completed`` reply within 30 s of its run
ending, with at most 2 Airflow calls per second for tracking per replica.

The worker runs with its default settings (``TRACK_POLL_INTERVAL`` 5 s) on fresh topics
and gets a burst of N requests with ``track: true`` for the paused DAG, so no run
executes. The bench reads the replies as they come: each first reply names its run, and
a small pool of threads ends that run at once with ``PATCH .../dagRuns/{run_id}``
``{"state": "success"}``; the moment the PATCH returned is the run's end (wall clock, ms).
The ``completed`` replies are waited for, bounded, and reported:

- completed / N; latency from the run's end to its ``completed`` reply (the reply's Kafka
  timestamp, stamped by the worker on this host) p50/p95/p99/max; the share of N within
  30 s (a run never completed counts as late);
- the worker's tracking calls (``trigger_consumer_airflow_calls_total{purpose="tracking"}``,
  scraped before the burst and after the last ``completed``) per second over the time
  from the first ``triggered`` reply to the last ``completed`` one; and the steepest 30 s
  of it (sampled every 5 s), since the rate grows while more ended runs are listed.

The tracker's first listing reaches 5 minutes before the first tracked run's creation
(``consumer.tracking.window.LIST_OVERLAP``), so runs an earlier contender ended in that
time are read once, in its first pages; every later listing reads only what ended since.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from kafka import KafkaConsumer, TopicPartition

from bench import metrics_probe
from bench.process import ContenderProcess
from bench.procstat import Usage
from bench.result import Result
from bench.rig import PAUSED_DAG, Rig, keys_for
from bench.run_end import RunEnder
from bench.traffic import produce_burst
from bench.worker_run import drive_timeout
from consumer.tracking.tracker import DEFAULT_INTERVAL

NAME = "tracked runs"
FAMILY = "tracked"
GOAL_SECONDS = 30.0  # issue 16: `completed` within 30 s of the run ending...
GOAL_CALLS_PER_SECOND = 2.0  # ...with at most 2 tracking calls per second per replica
TAIL_SECONDS = 180.0  # after the last run ended, how long missing `completed` replies may take
STALL_SECONDS = 60.0  # no first reply for this long: the worker collapsed; stop waiting for more
FIRST_STATUSES = frozenset({"triggered", "duplicate"})
SAMPLE_SECONDS = 5.0  # how often the tracking-call counter is sampled...
PEAK_WINDOW = 30.0  # ...for its steepest rate over this long


@dataclass
class TrackedResult(Result):
    """The figures of the ``tracked`` contender (``latencies``: run end → ``completed``).

    Attributes:
        ended: runs the bench ended (the PATCH answered 200).
        patch_failures: runs whose PATCH failed every try (never ended, never completed).
        tracking_calls: the worker's tracking calls to Airflow during the run.
        trigger_calls: its trigger calls (POSTs, retries, look-ups) meanwhile.
        first_replies_seconds: from the burst to the last first reply (the trigger phase).
        peak_calls_per_second: the steepest ``PEAK_WINDOW`` of tracking calls per second.
    """

    ended: int = 0
    patch_failures: int = 0
    tracking_calls: float = 0.0
    trigger_calls: float = 0.0
    first_replies_seconds: float = 0.0
    peak_calls_per_second: float = 0.0

    @property
    def within_goal(self) -> float:
        """The share of N whose ``completed`` reply came within ``GOAL_SECONDS`` of the end."""
        inside = sum(1 for latency in self.latencies if latency <= GOAL_SECONDS)
        return inside / self.n if self.n else 0.0

    @property
    def tracking_calls_per_second(self) -> float:
        """Tracking calls per second from the first ``triggered`` to the last ``completed``."""
        return self.tracking_calls / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Seen:
    """What the replies said so far (Kafka timestamps, epoch ms)."""

    first_ms: dict[str, int] = field(default_factory=dict)
    completed_ms: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # keys whose first reply was no run
    last_progress: float = field(default_factory=time.monotonic)


class _ReplyReader(threading.Thread):
    """Reads the reply topic: first replies go to ``ender``, ``completed`` ones are timed."""

    def __init__(
        self, rig: Rig, topic: str, seen: _Seen, lock: threading.Lock, ender: RunEnder
    ) -> None:
        super().__init__(daemon=True, name="tracked-replies")
        self.consumer = KafkaConsumer(bootstrap_servers=rig.bootstrap, enable_auto_commit=False)
        self.topic = topic
        self.seen = seen
        self.lock = lock
        self.ender = ender
        self.ready = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            partitions = None
            while not partitions and not self.halt.is_set():
                partitions = self.consumer.partitions_for_topic(self.topic)
                time.sleep(0 if partitions else 0.2)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions or ())]
            self.consumer.assign(assigned)
            self.consumer.seek_to_beginning(*assigned)
            self.ready.set()
            while not self.halt.is_set():
                for records in self.consumer.poll(timeout_ms=200).values():
                    for record in records:
                        self._take(record)
        finally:
            self.ready.set()
            self.consumer.close()

    def _take(self, record: Any) -> None:
        key = record.key.decode() if record.key else ""
        try:
            reply = json.loads(record.value)
        except ValueError:
            return
        status = reply.get("status") if isinstance(reply, dict) else None
        run_id = reply.get("dag_run_id") if isinstance(reply, dict) else None
        with self.lock:
            if status == "completed":
                self.seen.completed_ms.setdefault(key, record.timestamp)
                return
            if key in self.seen.first_ms or key in self.seen.refused:
                return
            self.seen.last_progress = time.monotonic()
            if status in FIRST_STATUSES and isinstance(run_id, str):
                self.seen.first_ms[key] = record.timestamp
            else:
                self.seen.refused[key] = str(status)
                return
        self.ender.submit(key, run_id)


class _CallSampler(threading.Thread):
    """Samples the worker's tracking calls every ``SAMPLE_SECONDS`` until halted."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True, name="tracked-calls")
        self.port = port
        self.samples: list[tuple[float, float]] = []  # (monotonic s, tracking calls so far)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(SAMPLE_SECONDS):
            try:
                calls = metrics_probe.airflow_calls(self.port).get("tracking", 0.0)
            except requests.RequestException:
                continue
            self.samples.append((time.monotonic(), calls))

    def peak_rate(self) -> float:
        """The most tracking calls per second over any ``PEAK_WINDOW`` between two samples."""
        best = 0.0
        for i, (start, before) in enumerate(self.samples):
            later = [(t, c) for t, c in self.samples[i + 1 :] if t - start >= PEAK_WINDOW]
            if later:
                at, after = later[0]
                best = max(best, (after - before) / (at - start))
        return best


def run(rig: Rig, n: int) -> TrackedResult:
    """Start a worker, send it ``n`` tracked requests, end their runs, time the replies.

    Raises:
        RuntimeError: the worker did not start (``ContenderProcess.wait_ready``).
        OSError: Airflow did not answer the listing of recently ended runs.
    """
    topics = rig.topics("tracked")
    keys = keys_for(f"{rig.run_tag}-tracked", n)
    env = rig.worker_env(topics, rig.work / "tracked.db", {})
    port = int(env["TRIGGER_CONSUMER_HTTP_PORT"])
    process = ContenderProcess("consumer", ["run"], env, rig.work / "tracked.log")
    seen, lock = _Seen(), threading.Lock()
    ender = RunEnder(rig.airflow, PAUSED_DAG)
    reader = _ReplyReader(rig, topics.replies, seen, lock, ender)
    sampler = _CallSampler(port)
    try:
        process.wait_ready()
        reader.start()
        reader.ready.wait(timeout=60)
        calls_before, usage_before = metrics_probe.airflow_calls(port), process.usage()
        sampler.start()
        produced = produce_burst(rig.bootstrap, topics.requests, keys, PAUSED_DAG, track=True)
        with lock:
            seen.last_progress = time.monotonic()  # the stall clock starts with the load
        _wait(seen, lock, ender, n)
        calls_after, usage_after = metrics_probe.airflow_calls(port), process.usage()
    finally:
        reader.halt.set()
        sampler.halt.set()
        ender.close()
        process.stop()
    if reader.ident is not None:
        reader.join(timeout=30)
    usage = Usage(usage_after.cpu_seconds - usage_before.cpu_seconds, usage_after.peak_rss_bytes)
    result = _result(
        seen, ender, n, produced=produced, usage=usage, before=calls_before, after=calls_after
    )
    result.peak_calls_per_second = sampler.peak_rate()
    return result


def _wait(seen: _Seen, lock: threading.Lock, ender: RunEnder, n: int) -> None:
    """Until every run completed, or the first replies stall, or the tail after the last end."""
    deadline = time.monotonic() + drive_timeout(n) + TAIL_SECONDS
    last_end = None
    while time.monotonic() < deadline:
        time.sleep(0.5)
        with lock:
            answered = len(seen.first_ms) + len(seen.refused)
            completed = sum(1 for key in seen.completed_ms if key in seen.first_ms)
            stalled = time.monotonic() - seen.last_progress > STALL_SECONDS
        ended, pending = ender.state()
        idle = pending == 0
        if completed >= len(seen.first_ms) and (answered >= n or stalled):
            return
        if idle and (answered >= n or stalled):
            # every run that will end has ended: give the stragglers the tail, then stop
            last_end = last_end or time.monotonic()
            if time.monotonic() - last_end > TAIL_SECONDS or completed >= ended:
                return


def _result(
    seen: _Seen,
    ender: RunEnder,
    n: int,
    *,
    produced: dict[str, int],
    usage: Usage,
    before: dict[str, float],
    after: dict[str, float],
) -> TrackedResult:
    """The figures from what the replies and the PATCHes recorded."""
    timed = [key for key in seen.completed_ms if key in ender.ended_ms]
    latencies = [(seen.completed_ms[key] - ender.ended_ms[key]) / 1000 for key in timed]
    triggered = list(seen.first_ms.values())
    span = 0.0
    if triggered and timed:
        span = (max(seen.completed_ms[key] for key in timed) - min(triggered)) / 1000
    first_span = (max(triggered) - min(produced.values())) / 1000 if triggered else 0.0
    tracking = after.get("tracking", 0.0) - before.get("tracking", 0.0)
    trigger = after.get("trigger", 0.0) - before.get("trigger", 0.0)
    result = TrackedResult(
        name=NAME,
        family=FAMILY,
        n=n,
        done=len(timed),
        seconds=span,
        latencies=latencies,
        airflow_calls=round(tracking),
        errors=n - len(timed),
        usage=usage,
        ended=len(ender.ended_ms),
        patch_failures=ender.failures,
        tracking_calls=tracking,
        trigger_calls=trigger,
        first_replies_seconds=first_span,
    )
    refused = f", {len(seen.refused)} refused" if seen.refused else ""
    result.note = (
        f"first replies in {first_span:.0f} s{refused}; ended {result.ended} by PATCH "
        f"({ender.failures} failed); trigger calls {trigger:.0f}"
    )
    return result


def describe(result: Result) -> str:
    """A one-line summary for the console."""
    if not isinstance(result, TrackedResult) or not result.latencies:
        return f"{result.done}/{result.n} completed ({result.note})"
    return (
        f"{result.done}/{result.n} completed; run end → completed "
        f"{' / '.join(_s(result.percentile(q)) for q in (0.5, 0.95, 0.99))} s (p50/p95/p99), "
        f"max {max(result.latencies):.1f} s; {result.within_goal:.1%} within "
        f"{GOAL_SECONDS:.0f} s; tracking calls {result.tracking_calls:.0f} = "
        f"{result.tracking_calls_per_second:.2f}/s over {result.seconds:.0f} s, steepest "
        f"{PEAK_WINDOW:.0f} s {result.peak_calls_per_second:.2f}/s ({result.note})"
    )


def table(results: list[Result]) -> list[str]:
    """The report's section on completion tracking, with the issue's goals; none if not run."""
    rows = [r for r in results if isinstance(r, TrackedResult)]
    if not rows:
        return []
    lines = [
        "## Completion tracking (`track: true`)",
        "",
        "Runs of the paused DAG, each ended by the bench with a PATCH to `success` as soon as "
        "its first reply arrived; latency from the PATCH's answer to the `completed` reply. "
        'Tracking calls: the worker\'s `trigger_consumer_airflow_calls_total{purpose="tracking"}`'
        " from the first `triggered` reply to the last `completed` one. Default tracking "
        f"settings (poll interval {DEFAULT_INTERVAL:.0f} s).",
        "",
        "| N | completed/N | ended by PATCH | p50 / p95 / p99 / max s | within 30 s "
        "| tracking calls | tracking calls/s | steepest 30 s, calls/s | trigger calls | span s "
        "| worker CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        quantiles = " / ".join(_s(r.percentile(q)) for q in (0.5, 0.95, 0.99))
        worst = _s(max(r.latencies) if r.latencies else None)
        cpu = "-" if r.usage is None else f"{r.usage.cpu_seconds:.1f}"
        lines.append(
            f"| {r.n} | {r.done}/{r.n} | {r.ended} | {quantiles} / {worst} "
            f"| {r.within_goal:.1%} | {r.tracking_calls:.0f} | {r.tracking_calls_per_second:.2f} "
            f"| {r.peak_calls_per_second:.2f} | {r.trigger_calls:.0f} | {r.seconds:.0f} | {cpu} |"
        )
    lines.append("")
    for r in rows:
        latency_met = r.within_goal >= 1.0
        calls_met = r.tracking_calls_per_second <= GOAL_CALLS_PER_SECOND
        lines += [
            f"- N = {r.n}: `completed` within {GOAL_SECONDS:.0f} s of the run ending: "
            f"{r.within_goal:.1%} of N ({'met' if latency_met else 'not met'}); tracking "
            f"calls {r.tracking_calls_per_second:.2f}/s for one replica (goal ≤ "
            f"{GOAL_CALLS_PER_SECOND:.0f}/s: {'met' if calls_met else 'not met'}; steepest "
            f"{PEAK_WINDOW:.0f} s: {r.peak_calls_per_second:.2f}/s)",
        ]
    return [*lines, ""]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
