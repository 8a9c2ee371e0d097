"""Command-line entry point: the `trigger-consumer` parser, its subcommands and exit codes.

Each subcommand lives in its own module under ``consumer.cli`` and exposes
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported
only when their command runs, so ``--help`` and small commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from consumer import __version__

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and the answer is "no" (invalid input, a failed check)
EXIT_USAGE = 2  # bad flags or settings; nothing was touched
EXIT_UNAVAILABLE = 3  # a server the command needs could not be reached

# command name -> module under consumer.cli
COMMANDS: dict[str, str] = {
    "run": "run",
    "send": "send",
    "validate": "validate",
    "schema": "schema",
    "run-id": "run_id",
    "replay": "replay",
    "doctor": "doctor",
    "routes": "routes",
    "audit": "audit",
    "deferred": "deferred",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per command in ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="trigger-consumer",
        description="Turn Kafka trigger requests into Apache Airflow DAG runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"consumer.cli.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The process exit code (``EXIT_*``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    code: int = args.run(args)
    return code
