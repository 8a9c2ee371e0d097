"""``python -m bench``: run the contenders on the local stack, print figures, write the report."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from bench import ceiling, report
from bench.result import Result, describe
from bench.rig import PAUSED_DAG, UNPAUSED_DAG, Rig, keys_for
from bench.worker_run import Contender, run

DEFAULT_CONTENDERS = ("ceiling", "naive", "worker", "replay", "passthrough", "unpaused")
# the long ones, run when named: a large duplicate replay against a raw passthrough of the
# same size, a backlog of new keys with MAX_IN_FLIGHT=256, a duplicate backlog for RSS
LARGE_CONTENDERS = ("replay-large", "backlog", "backlog-rss")
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
    parser.add_argument("--remark", default="", help="a line for the report (load, context)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Sizes:
    """How many requests each kind of contender gets."""

    n: int
    large: int
    backlog: int
    rss: int


def large_replay(rig: Rig, name: str, n: int) -> Contender:
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
    )


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
    return plan + large_contenders(rig, sizes, chosen)


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
    return plan


def main(argv: list[str] | None = None) -> int:
    """Run the chosen contenders in order, then write the report."""
    args = parse(argv)
    chosen = set(args.contenders.split(","))
    unknown = chosen - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contender(s): {', '.join(sorted(unknown))}")
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
            try:
                result = run(rig, contender)
            except (RuntimeError, OSError) as exc:  # one broken contender must not lose the rest
                print(f"{contender.name}: failed: {exc}", flush=True)
                result = Result(contender.name, contender.family, len(contender.keys), 0, 0.0)
                result.note = f"failed: {exc}"
                result.errors = result.n
            print(f"{result.name}: {describe(result)} ({result.note})", flush=True)
            results.append(result)
            ceiling.settle(rig)
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
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
