"""Store latency per operation (issue 17), measured in this process on SQLite and PostgreSQL.

The ``store-latency`` contender opens each store the way the worker does (``open_store``)
on a fresh file or database, then times single calls, one after another: ``mark_pending``
and ``record`` of new keys (the two writes of a new run), ``get`` of one key and
``get_many`` of 100 known keys (the read of one poll). No Kafka and no Airflow; the
figures are round trips plus the store's own work, on this host.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from bench.result import Result
from bench.rig import Rig, keys_for
from bench.seed import RETENTION
from consumer.run_id import run_id_for
from consumer.store import EntryStatus, IdempotencyStore, open_store

BATCH = 100  # keys per get_many: a poll's worth
OPERATIONS = ("mark_pending", "record", "get", f"get_many({BATCH})")
DAG = "devstack_paused"


def measure(name: str, url: str, calls: int, tag: str) -> list[Result]:
    """Time ``calls`` of each operation on the store at ``url``; one result per operation."""
    store = open_store(url, RETENTION)
    timings: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    keys = keys_for(tag, max(calls, BATCH))
    try:
        for key in keys:
            run_id = run_id_for(key)
            _time(timings["mark_pending"], _mark, store, key, run_id)
            _time(timings["record"], _record, store, key, run_id)
        picker = random.Random(17)  # noqa: S311 -- a sample of keys, not a secret
        for key in keys[:calls]:
            _time(timings["get"], store.get, key)
            _time(timings[f"get_many({BATCH})"], store.get_many, picker.sample(keys, BATCH))
    finally:
        store.close()
    return [
        Result(
            name=f"{name}, {op}",
            family="store-latency",
            n=len(samples),
            done=len(samples),
            seconds=sum(samples),
            latencies=samples,
            note=name,
        )
        for op, samples in timings.items()
    ]


def run(rig: Rig, calls: int) -> list[Result]:
    """Both stores, each fresh: a SQLite file in the run's folder and a new database."""
    results = measure(
        "SQLite", f"sqlite:///{rig.work / 'store-latency.db'}", calls, f"{rig.run_tag}-lat-sqlite"
    )
    url = rig.store_database("store-latency")
    return results + measure("PostgreSQL", url, calls, f"{rig.run_tag}-lat-pg")


def describe(result: Result) -> str:
    """A console line: calls and the percentiles in ms with two decimals."""
    p50, p95 = result.percentile(0.5) or 0.0, result.percentile(0.95) or 0.0
    return f"{result.done} calls, p50 {1000 * p50:.2f} ms, p95 {1000 * p95:.2f} ms"


def _time(samples: list[float], call: Callable[..., object], *args: object) -> None:
    began = time.perf_counter()
    call(*args)
    samples.append(time.perf_counter() - began)


def _mark(store: IdempotencyStore, key: str, run_id: str) -> None:
    store.mark_pending(key, fingerprint="bench", dag_id=DAG, dag_run_id=run_id)


def _record(store: IdempotencyStore, key: str, run_id: str) -> None:
    store.record(
        key,
        fingerprint="bench",
        dag_id=DAG,
        dag_run_id=run_id,
        status=EntryStatus.TRIGGERED,
        run_state="queued",
    )
