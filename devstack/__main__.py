"""``python -m devstack``: install, start, describe and stop the local stack."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devstack.procs import StackError
from devstack.stack import Stack, prepare, say

AIRFLOW_CHOICES = {"3": ("3",), "2": ("2",), "both": ("3", "2"), "none": ()}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m devstack`` parser."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Kafka and Airflow, print how to reach them as JSON")
    up.add_argument("--airflow", choices=sorted(AIRFLOW_CHOICES), default="both")
    up.add_argument("--no-kafka", action="store_true", help="start Airflow only")
    up.add_argument("--dags", type=Path, action="append", default=[], help="extra DAG folder")
    up.add_argument("--json", action="store_true", help="print only the JSON document")
    sub.add_parser("demo", help="run the worker end to end on the stack (make demo)")
    sub.add_parser("prepare", help="install what the stack needs (jars, venvs, PostgreSQL)")
    sub.add_parser("down", help="stop everything the stack runs")
    sub.add_parser("status", help="print the running stack as JSON")
    for name in ("stop-api", "start-api"):
        api = sub.add_parser(name, help=f"{name.split('-')[0]} only the Airflow API server")
        api.add_argument("--airflow", choices=["3", "2"], required=True)
    return parser


def up(stack: Stack, args: argparse.Namespace) -> None:
    """Start what is missing and print the JSON document."""
    for folder in args.dags:
        if not folder.is_dir():
            raise StackError(f"--dags {folder}: not a directory")
    doc = stack.up(
        kafka=not args.no_kafka,
        airflow=AIRFLOW_CHOICES[args.airflow],
        dags=tuple(args.dags),
        postgres=True,  # the idempotency store's database: postgres.store_url
    )
    print(json.dumps(doc, indent=None if args.json else 2))
    if not args.json:
        say("stop it with: python -m devstack down")


def demo(_stack: Stack, _args: argparse.Namespace) -> None:
    """Run the worker end to end (devstack/demo.py)."""
    from devstack.demo import main as run_demo  # noqa: PLC0415 -- imports the worker's deps

    run_demo()


COMMANDS = {
    "up": up,
    "demo": demo,
    "prepare": lambda stack, args: prepare(),
    "down": lambda stack, args: stack.down(),
    "status": lambda stack, args: print(json.dumps(stack.describe(), indent=2)),
    "stop-api": lambda stack, args: stack.stop_api(args.airflow),
    "start-api": lambda stack, args: stack.start_api(args.airflow),
}


def main(argv: list[str] | None = None) -> int:
    """Run one devstack command; exit 0 on success, 1 when a server cannot be had."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](Stack(), args)
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
