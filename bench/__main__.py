"""``python -m bench``: run the contenders on the local stack, print figures, write the report.

Contenders (``--contenders``): ``ceiling`` (direct POST sweep), ``naive``, ``floor`` (consume,
POST and acked produce, nothing else: with kafka-python and requests, and with librdkafka and
http.client), ``worker`` (adaptive and fixed limits, SQLite store), ``replay`` (duplicates of
the adaptive run),
``passthrough``, ``unpaused``; ``pg`` and ``pg2`` (new runs, then their duplicate replay,
on a PostgreSQL store of their own: one replica, two replicas in one group);
``store-latency`` (per-operation store latency in process, SQLite and PostgreSQL);
``steady`` (open-loop load at shares of the ceiling, worker beside direct POSTs);
``routed`` (application events through a route, then the same events again: duplicates,
beside plain requests); and the
long ones, run when named: ``replay-large`` (with the raw and acked passthroughs and the
duplicate floor: the worker's stages without its bookkeeping), ``backlog``, ``backlog-rss``,
``pg-replay-large`` (a seeded large duplicate replay on PostgreSQL), ``tracked`` (requests
with ``track``: their runs ended by the bench, timed to the ``completed`` replies),
``flood`` and ``flood-pg2`` (a flood of one DAG limited to 20 queued runs beside a steady
5/s for another; SQLite, and PostgreSQL with two replicas).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import ceiling, flood, flood_report, report, steady, store_latency, tracked
from bench.options import CONTENDERS, parse
from bench.result import Result, describe
from bench.rig import PAUSED_DAG, UNPAUSED_DAG, Rig, keys_for
from bench.worker_run import Contender, run

# the library floor's POST threads: near the adaptive limit's mean and the ceiling's best point
FLOOR_THREADS = 4


@dataclass(frozen=True)
class Sizes:
    """How many requests each kind of contender gets."""

    n: int
    large: int
    backlog: int
    rss: int


def large_replay(
    rig: Rig, name: str, n: int, store_url: str | None = None, *, floor: bool = False
) -> Contender:
    """A duplicate replay of ``n`` requests queued before the worker starts, store seeded.

    With ``floor``, ``bench.duplicate_floor`` answers them instead of the worker.
    """
    slug = name.rsplit(",", maxsplit=1)[-1].strip().replace(" ", "-").lower()
    family, module, args = (
        ("duplicate-floor", "bench.duplicate_floor", [])
        if floor
        else ("replay", "consumer", ["run"])
    )
    return Contender(
        name,
        family,
        module,
        keys_for(f"{rig.run_tag}-{family}-{slug}", n),
        PAUSED_DAG,
        args=args,
        queued=True,
        seeded=True,
        store_url=store_url,
    )


def postgres_contenders(rig: Rig, n: int, chosen: set[str]) -> list[Contender]:
    """New runs, then their duplicate replay, on a fresh PostgreSQL store: 1 and 2 replicas.

    As with SQLite's ``worker``/``replay`` pair, the replay sends the new runs' keys again
    to the store they left behind: every request is a duplicate.
    """
    plan: list[Contender] = []
    for contender, replicas in (("pg", 1), ("pg2", 2)):
        if contender not in chosen:
            continue
        suffix = "PostgreSQL store" + (f", {replicas} replicas" if replicas > 1 else "")
        url = rig.store_database(contender)
        keys = keys_for(f"{rig.run_tag}-{contender}", n)
        for name, family in (
            (f"worker, adaptive, {suffix}", "worker"),
            (f"duplicate replay, {suffix}", "replay"),
        ):
            plan.append(
                Contender(
                    name,
                    family,
                    "consumer",
                    keys,
                    PAUSED_DAG,
                    args=["run"],
                    store_url=url,
                    replicas=replicas,
                )
            )
    return plan


def floor_contenders(rig: Rig, n: int) -> list[Contender]:
    """New runs with nothing but consume, POST and acked produce: the kept libraries, and not."""
    return [
        Contender(
            f"{name}, {FLOOR_THREADS} threads",
            "floor",
            module,
            keys_for(f"{rig.run_tag}-{module.rsplit('.', 1)[-1]}", n),
            PAUSED_DAG,
            args=[rig.airflow.major, str(FLOOR_THREADS)],
            concurrency=FLOOR_THREADS,
        )
        for name, module in (
            ("library floor (kafka-python, requests)", "bench.floor"),
            ("floor without them (librdkafka, http.client)", "bench.floor_native"),
        )
    ]


def worker_contenders(
    rig: Rig,
    sizes: Sizes,
    fixed: list[int],
    chosen: set[str],
    *,
    profile: Path | None = None,
    profile_new: Path | None = None,
) -> list[Contender]:
    """The Kafka contenders in run order; the replay reuses the adaptive run's keys and store."""
    n = sizes.n
    adaptive_keys = keys_for(f"{rig.run_tag}-adaptive", n)
    adaptive_store = rig.work / "adaptive.db"
    plan: list[Contender] = []
    if "naive" in chosen:
        plan.append(
            Contender(
                "naive consumer",
                "naive",
                "bench.naive",
                keys_for(f"{rig.run_tag}-naive", n),
                PAUSED_DAG,
                args=[rig.airflow.major],
                concurrency=1,
            )
        )
    if "floor" in chosen:
        plan += floor_contenders(rig, n)
    if "worker" in chosen or "replay" in chosen:
        plan.append(
            Contender(
                "worker, adaptive (default)",
                "worker",
                "consumer",
                adaptive_keys,
                PAUSED_DAG,
                args=["run"],
                store=adaptive_store,
                profile=profile_new,
            )
        )
    if "worker" in chosen:
        for limit in fixed:
            env = {
                "TRIGGER_CONSUMER_AIRFLOW_CONCURRENCY": "fixed",
                "TRIGGER_CONSUMER_AIRFLOW_MAX_CONCURRENCY": str(limit),
            }
            plan.append(
                Contender(
                    f"worker, fixed {limit}",
                    "worker",
                    "consumer",
                    keys_for(f"{rig.run_tag}-fixed{limit}", n),
                    PAUSED_DAG,
                    args=["run"],
                    env=env,
                    concurrency=limit,
                )
            )
    if "replay" in chosen:
        plan.append(
            Contender(
                "duplicate replay",
                "replay",
                "consumer",
                adaptive_keys,
                PAUSED_DAG,
                args=["run"],
                store=adaptive_store,
                profile=profile,
            )
        )
    if "passthrough" in chosen:
        plan.append(
            Contender(
                "raw passthrough",
                "passthrough",
                "bench.passthrough",
                keys_for(f"{rig.run_tag}-raw", n),
                PAUSED_DAG,
            )
        )
        plan.append(
            Contender(
                "acked passthrough",
                "passthrough",
                "bench.passthrough",
                keys_for(f"{rig.run_tag}-acked", n),
                PAUSED_DAG,
                args=["--acked"],
            )
        )
    if "routed" in chosen:  # issue 15: application events through a route, then replayed
        routed_keys = keys_for(f"{rig.run_tag}-routed", n)
        routed_store = rig.work / "routed.db"
        for name in ("routed events", "routed events, replayed"):
            plan.append(
                Contender(
                    name,
                    "routed",
                    "consumer",
                    routed_keys,
                    PAUSED_DAG,
                    args=["run"],
                    store=routed_store,
                    routed=True,
                )
            )
    return plan + postgres_contenders(rig, n, chosen) + large_contenders(rig, sizes, chosen)


def large_contenders(rig: Rig, sizes: Sizes, chosen: set[str]) -> list[Contender]:
    """The long contenders, each with its requests queued before it starts."""
    plan: list[Contender] = []
    if "replay-large" in chosen:
        plan.append(large_replay(rig, "duplicate replay, large", sizes.large))
        plan.append(large_replay(rig, "duplicate floor, large", sizes.large, floor=True))
        for kind, args in (("raw", []), ("acked", ["--acked"])):
            plan.append(
                Contender(
                    f"{kind} passthrough, large",
                    "passthrough",
                    "bench.passthrough",
                    keys_for(f"{rig.run_tag}-{kind}-large", sizes.large),
                    PAUSED_DAG,
                    args=args,
                    queued=True,
                )
            )
    if "backlog" in chosen:
        plan.append(
            Contender(
                "worker, backlog, MAX_IN_FLIGHT=256",
                "backlog",
                "consumer",
                keys_for(f"{rig.run_tag}-backlog", sizes.backlog),
                PAUSED_DAG,
                args=["run"],
                env={"TRIGGER_CONSUMER_MAX_IN_FLIGHT": "256"},
                queued=True,
            )
        )
    if "backlog-rss" in chosen:
        plan.append(large_replay(rig, "duplicate backlog, RSS", sizes.rss))
    if "pg-replay-large" in chosen:
        url = rig.store_database("pg-replay-large")
        plan.append(large_replay(rig, "duplicate replay, large, PostgreSQL", sizes.large, url))
    return plan


def run_one(rig: Rig, contender: Contender) -> Result:
    """Run one Kafka contender, print its line and let Airflow settle after it."""
    try:
        result = run(rig, contender)
    except (
        RuntimeError,
        OSError,
        psycopg.Error,
    ) as exc:  # one broken contender must not lose the rest
        print(f"{contender.name}: failed: {exc}", flush=True)
        result = Result(contender.name, contender.family, len(contender.keys), 0, 0.0)
        result.note = f"failed: {exc}"
        result.errors = result.n
    print(f"{result.name}: {describe(result)} ({result.note})", flush=True)
    ceiling.settle(rig)
    return result


def run_tracked(rig: Rig, n: int) -> Result:
    """The ``tracked`` contender, printed like the others; a failure keeps the rest."""
    try:
        result: Result = tracked.run(rig, n)
        print(f"{result.name}: {tracked.describe(result)}", flush=True)
    except (RuntimeError, OSError) as exc:
        print(f"tracked runs: failed: {exc}", flush=True)
        result = Result(tracked.NAME, tracked.FAMILY, n, 0, 0.0, errors=n, note=f"failed: {exc}")
    ceiling.settle(rig)
    return result


def run_floods(rig: Rig, args: argparse.Namespace, chosen: set[str]) -> list[Result]:
    """The ``flood`` contenders, printed like the others; a failure keeps the rest."""
    results: list[Result] = []
    for contender, replicas in (("flood", 1), ("flood-pg2", 2)):
        if contender not in chosen:
            continue
        store_url = rig.store_database(contender) if replicas > 1 else None
        store = "PostgreSQL store, 2 replicas" if store_url else "SQLite store"
        plan = flood.Plan(
            f"flood, {store}",
            args.flood_n,
            args.flood_drain,
            args.flood_baseline,
            replicas=replicas,
            store_url=store_url,
        )
        try:
            result: Result = flood.run(rig, plan)
            print(f"{result.name}: {flood_report.describe(result)}", flush=True)
        except (RuntimeError, OSError, psycopg.Error) as exc:
            print(f"{plan.name}: failed: {exc}", flush=True)
            result = Result(plan.name, flood.FAMILY, plan.n, 0, 0.0, errors=plan.n)
            result.note = f"failed: {exc}"
        results.append(result)
        ceiling.settle(rig)
    return results


def steady_loads(rig: Rig, args: argparse.Namespace, base: float) -> list[Result]:
    """Each share of ``base``: direct POSTs at that rate, then the worker at that rate."""
    print(f"steady loads (open loop, {args.open_seconds:.0f} s each, ceiling {base:.1f}/s):")
    results = []
    for share in (int(x) / 100 for x in args.open_rates.split(",") if x):
        rate = share * base
        result = steady.direct(rig, share, rate, args.open_seconds, args.open_pool)
        print(f"  {result.name}: {describe(result)}", flush=True)
        results.append(result)
        ceiling.settle(rig)
        results.append(run_one(rig, steady.worker_contender(rig, share, rate, args.open_seconds)))
    return results


def unpaused_contender(rig: Rig, n: int) -> Contender:
    """New runs of a DAG the scheduler runs: the bench's last, as Airflow then executes them.

    Its runs keep Airflow's scheduler and executor busy for many minutes after it ends;
    any contender after it would be measured against that load.
    """
    return Contender(
        "worker, adaptive, DAG unpaused",
        "unpaused",
        "consumer",
        keys_for(f"{rig.run_tag}-unpaused", n),
        UNPAUSED_DAG,
        args=["run"],
    )


def closing_contenders(
    rig: Rig, args: argparse.Namespace, chosen: set[str], base: float | None, results: list[Result]
) -> None:
    """After the Kafka contenders: steady, store latency, tracked runs, floods, unpaused last.

    Appends to ``results`` as each ends, so that a crash still leaves the figures before it.
    """
    if "steady" in chosen and base:
        results += steady_loads(rig, args, base)
    if "store-latency" in chosen:
        print("store latency (in process):", flush=True)
        for result in store_latency.run(rig, args.store_calls):
            print(f"  {result.name}: {store_latency.describe(result)}", flush=True)
            results.append(result)
    if "tracked" in chosen:
        results.append(run_tracked(rig, args.tracked_n))
    results += run_floods(rig, args, chosen)
    if "unpaused" in chosen:
        results.append(run_one(rig, unpaused_contender(rig, args.n)))


def main(argv: list[str] | None = None) -> int:
    """Run the chosen contenders in order, then write the report."""
    args = parse(argv, description=__doc__)
    chosen = set(args.contenders.split(","))
    unknown = chosen - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contender(s): {', '.join(sorted(unknown))}")
    if "steady" in chosen and "ceiling" not in chosen and not args.ceiling_rate:
        raise SystemExit("steady needs the ceiling contender or --ceiling-rate")
    date, load_before = time.strftime("%Y-%m-%d"), report.load_average()
    rig = Rig.up(args.airflow, args.partitions)
    print(
        f"bench {rig.run_tag}: Airflow {args.airflow} at {rig.airflow.url}, N={args.n}", flush=True
    )
    results: list[Result] = []
    fixed = [int(x) for x in args.fixed.split(",") if x]
    rig.forget_runs()  # what earlier runs left
    if "ceiling" in chosen:
        print("API ceiling (no Kafka):", flush=True)
        clients = tuple(int(c) for c in args.clients.split(","))
        results += ceiling.sweep(rig, args.n, args.ceiling_seconds, clients)
    try:
        sizes = Sizes(args.n, args.large_n, args.backlog_n, args.rss_n)
        for contender in worker_contenders(
            rig, sizes, fixed, chosen, profile=args.profile, profile_new=args.profile_new
        ):
            results.append(run_one(rig, contender))
        base = steady.ceiling_rate(results, args.ceiling_rate)
        closing_contenders(rig, args, chosen, base, results)
    finally:  # a contender that crashed still leaves the figures of the others
        context = report.Context(
            date=date,
            airflow=f"{rig.airflow.version}",
            n=args.n,
            partitions=args.partitions,
            ceiling_seconds=args.ceiling_seconds,
            load_before=load_before,
            load_after=report.load_average(),
            remark=args.remark,
        )
        path = report.write(results, context, args.out)
        try:
            rig.drop_databases()
        except psycopg.Error as exc:  # leftover databases are harmless: say so, keep the report
            print(f"could not drop the store databases {rig.databases}: {exc}", flush=True)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
