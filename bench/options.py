"""The command line of ``python -m bench``: the contender names and every option."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import steady

DEFAULT_CONTENDERS = (
    "ceiling",
    "naive",
    "floor",
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
# a large duplicate replay on a seeded PostgreSQL store, completion tracking of many runs,
# a flood of one limited DAG beside a steady load (SQLite; PostgreSQL with two replicas)
LARGE_CONTENDERS = (
    "replay-large",
    "backlog",
    "backlog-rss",
    "pg-replay-large",
    "tracked",
    "flood",
    "flood-pg2",
)
CONTENDERS = DEFAULT_CONTENDERS + LARGE_CONTENDERS
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None = None, *, description: str | None = None) -> argparse.Namespace:
    """The command line; ``description`` heads ``--help`` (``bench.__main__``'s docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=description)
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
    parser.add_argument(
        "--tracked-n", type=int, default=10_000, help="tracked requests of `tracked` (10,000)"
    )
    parser.add_argument(
        "--flood-n", type=int, default=5000, help="flood requests of `flood` (5,000)"
    )
    parser.add_argument(
        "--flood-drain",
        type=float,
        default=3.0,
        help="flood runs the bench ends per second, as a scheduler would; under the "
        "worker's release rate, or the limit is never reached (3)",
    )
    parser.add_argument(
        "--flood-baseline",
        type=float,
        default=60.0,
        help="seconds of the steady load alone before the flood (60 s)",
    )
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
