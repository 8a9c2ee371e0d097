"""Steady load (issue 16): the worker and direct POSTs at fixed shares of the API ceiling.

An open loop, unlike the burst: requests are due at a fixed rate (25 %, 50 % and 90 % of
the best ceiling point of the same run, or ``--ceiling-rate``) for ``--open-seconds``,
whatever the answers do, and each one's latency counts from its due time. This is what
a producer feels at that load; the burst percentiles are queueing time.

- ``steady, worker``: the adaptive worker on fresh topics, requests produced at the
  rate (``bench.traffic.produce_steady``); latency is due time → reply acked.
- ``steady, direct POST``: the same rate of trigger POSTs straight to Airflow from a pool
  of threads, each POST started at its due time (or as soon as a thread is free: the
  wait counts); latency is answer time → due time. The floor the worker adds to.
"""

from __future__ import annotations

import itertools
import threading
import time

import requests

from bench.ceiling import POST_TIMEOUT, post_trigger, trigger_body
from bench.result import Result
from bench.rig import PAUSED_DAG, Rig, keys_for
from bench.worker_run import Contender

DEFAULT_SHARES = (0.25, 0.5, 0.9)
DEFAULT_POOL = 16  # POST threads: the sweep's best point on the reference VM; more tips it over
GOAL_SHARE = 0.5
GOAL_MARGIN = 0.050  # issue 16: worker p99 at half the ceiling ≤ direct POST p99 + 50 ms


def label(share: float, rate: float) -> str:
    """The row label's prefix of one steady load."""
    return f"steady {share:.0%} of ceiling ({rate:.1f}/s)"


def worker_contender(rig: Rig, share: float, rate: float, seconds: float) -> Contender:
    """The adaptive worker under ``rate`` requests per second for ``seconds``."""
    return Contender(
        f"{label(share, rate)}, worker",
        "steady",
        "consumer",
        keys_for(f"{rig.run_tag}-steady{round(share * 100)}", max(1, round(rate * seconds))),
        PAUSED_DAG,
        args=["run"],
        rate=rate,
        load_share=share,
    )


def direct(rig: Rig, share: float, rate: float, seconds: float, pool: int) -> Result:
    """Trigger POSTs straight to Airflow at ``rate`` per second for ``seconds`` (open loop)."""
    url = f"{rig.airflow.url}/api/{rig.airflow.api_version}/dags/{PAUSED_DAG}/dagRuns"
    total = max(1, round(rate * seconds))
    numbers = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    sessions = [rig.airflow.session() for _ in range(pool)]
    start = time.monotonic() + 0.2
    tag = f"{rig.run_tag}-direct{round(share * 100)}"

    def loop(session: requests.Session) -> None:
        while True:
            with lock:
                i = next(numbers)
            if i >= total:
                return
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ok = post_trigger(session, url, trigger_body(rig.airflow, f"{tag}-{i:06d}"))
            with lock:
                if ok:
                    latencies.append(time.monotonic() - due)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 2 * POST_TIMEOUT + 10)
    elapsed = time.monotonic() - start
    for session in sessions:
        session.close()
    return Result(
        name=f"{label(share, rate)}, direct POST",
        family="steady-direct",
        n=total,
        done=len(latencies),
        seconds=elapsed,
        latencies=latencies,
        airflow_calls=len(latencies) + failures[0],
        errors=total - len(latencies),
        concurrency=pool,
        note=f"pool of {pool} threads",
        load_share=share,
        offered_rate=rate,
    )


def ceiling_rate(results: list[Result], fallback: float | None) -> float | None:
    """The best ceiling point's rate of this run, else ``fallback`` (``--ceiling-rate``)."""
    points = [r.rate for r in results if r.family == "ceiling" and r.done]
    return max(points) if points else fallback
