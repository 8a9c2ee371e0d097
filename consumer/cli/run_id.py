"""`trigger-consumer run-id`: print the DAG run id each idempotency key maps to."""

from __future__ import annotations

import argparse
import sys

from consumer.cli import EXIT_OK, EXIT_USAGE
from consumer.contract import MAX_IDEMPOTENCY_KEY_CHARS, is_idempotency_key
from consumer.run_id import run_id_for

HELP = "print the DAG run id each idempotency key maps to (one line per key)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the keys.

    Args:
        parser: the ``run-id`` subparser.
    """
    parser.add_argument("keys", nargs="+", metavar="KEY", help="an idempotency key")


def run(args: argparse.Namespace) -> int:
    """Print one run id per key, in order; refuse keys the contract refuses.

    Args:
        args: the parsed flags.

    Returns:
        ``EXIT_OK``, or ``EXIT_USAGE`` (printing nothing) when a key breaks the contract.
    """
    keys: list[str] = args.keys
    invalid = [key for key in keys if not is_idempotency_key(key)]
    if invalid:
        for key in invalid:
            sys.stderr.write(
                f"invalid idempotency key {key[:100]!r}: 1-{MAX_IDEMPOTENCY_KEY_CHARS} "
                "characters without control characters\n"
            )
        return EXIT_USAGE
    for key in keys:
        sys.stdout.write(run_id_for(key) + "\n")
    return EXIT_OK
