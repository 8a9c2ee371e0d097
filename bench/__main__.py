"""``python -m bench``: run the contenders on the local stack, print figures, write the report.

Contenders (``--contenders``): ``ceiling`` (direct POST sweep), ``naive``, ``worker``
(adaptive and fixed limits, SQLite store), ``replay`` (duplicates of the adaptive run),
``passthrough``, ``unpaused``; ``pg`` and ``pg2`` (new runs, then their duplicate replay,
on a PostgreSQL store of their own: one replica, two replicas in one group);
``store-latency`` (per-operation store latency in process, SQLite and PostgreSQL);
``steady`` (open-loop load at shares of the ceiling, worker beside direct POSTs);
``routed`` (application events through a route, then the same events again: duplicates,
beside plain requests); and the
long ones, run when named: ``replay-large``, ``backlog``, ``backlog-rss``,
``pg-replay-large`` (a seeded large duplicate replay on PostgreSQL).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import ceiling, report, steady, store_latency
from bench.result import Result, describe
from bench.rig import PAUSED_DAG, UNPAUSED_DAG, Rig, keys_for
from bench.worker_run import Contender, run

DEFAULT_CONTENDERS = (
    "ceiling",
    "naive",
    "worker",
    "replay",
    "passthrough",
    "unpaused",
    "pg",
    "pg2",
    "steady",
    "store-latency",
    "routed",
)
# the long ones, run when named: a large duplicate replay against a raw passthrough of the
# same size, a backlog of new keys with MAX_IN_FLIGHT=256, a duplicate backlog for RSS,
# a large duplicate replay on a seeded PostgreSQL store
LARGE_CONTENDERS = ("replay-large", "backlog", "backlog-rss", "pg-replay-large")
CONTENDERS = DEFAULT_CONTENDERS + LARGE_CONTENDERS
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="requests per contender (2000)")
    parser.add_argument("--partitions", type=int, default=6, help="request topic partitions (6)")
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)} "
        f"(default {','.join(DEFAULT_CONTENDERS)})",
    )
    parser.add_argument(
        "--large-n", type=int, default=100_000, help="replay-large requests (100,000)"
    )
    parser.add_argument("--backlog-n", type=int, default=20_000, help="backlog requests (20,000)")
    parser.add_argument("--rss-n", type=int, default=200_000, help="backlog-rss requests (200,000)")
    parser.add_argument("--airflow", choices=("3", "2"), default="3", help="Airflow major (3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    parser.add_argument(
        "--ceiling-seconds", type=float, default=20.0, help="longest ceiling point (20 s)"
    )
    parser.add_argument("--clients", default="1,2,4,8,16,32", help="ceiling sweep (1,...,32)")
    parser.add_argument("--fixed", default="4,16,64", help="fixed worker limits (4,16,64)")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the duplicate replay under py-spy; write its collapsed stacks to this file",
    )
    parser.add_argument(
        "--profile-new",
        type=Path,
        default=None,
        help="run the adaptive worker (new runs) under py-spy; collapsed stacks to this file",
    )
    parser.add_argument(
        "--open-seconds", type=float, default=60.0, help="length of each steady load (60 s)"
    )
    parser.add_argument(
        "--open-rates",
        default="25,50,90",
        help="steady loads in %% of the ceiling (25,50,90)",
    )
    parser.add_argument(
        "--ceiling-rate",
        type=float,
        default=None,
        help="runs/s the steady shares refer to when `ceiling` is not run",
    )
    parser.add_argument(
        "--open-pool",
        type=int,
        default=steady.DEFAULT_POOL,
        help=f"threads of the direct POSTs under steady load ({steady.DEFAULT_POOL})",
    )
    parser.add_argument(
        "--store-calls", type=int, default=1000, help="calls per store operation timed (1000)"
    )
    parser.add_argument("--remark", default="", help="a line for the report (load, context)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Sizes:
    """How many requests each kind of contender gets."""

    n: int
    large: int
    backlog: int
    rss: int


def large_replay(rig: Rig, name: str, n: int, store_url: str | None = None) -> Contender:
    """A duplicate replay of ``n`` requests queued before the worker starts, store seeded."""
    slug = name.rsplit(",", maxsplit=1)[-1].strip().replace(" ", "-").lower()
    return Contender(
        name,
        "replay",
        "consumer",
        keys_for(f"{rig.run_tag}-{slug}", n),
        PAUSED_DAG,
        args=["run"],
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
    if "unpaused" in chosen:
        plan.append(
            Contender(
                "worker, adaptive, DAG unpaused",
                "unpaused",
                "consumer",
                keys_for(f"{rig.run_tag}-unpaused", n),
                UNPAUSED_DAG,
                args=["run"],
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
        plan.append(
            Contender(
                "raw passthrough, large",
                "passthrough",
                "bench.passthrough",
                keys_for(f"{rig.run_tag}-raw-large", sizes.large),
                PAUSED_DAG,
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


def main(argv: list[str] | None = None) -> int:
    """Run the chosen contenders in order, then write the report."""
    args = parse(argv)
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
        if "steady" in chosen and base:
            results += steady_loads(rig, args, base)
        if "store-latency" in chosen:
            print("store latency (in process):", flush=True)
            for result in store_latency.run(rig, args.store_calls):
                print(f"  {result.name}: {store_latency.describe(result)}", flush=True)
                results.append(result)
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
