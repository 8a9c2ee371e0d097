"""`trigger-consumer doctor`: check Kafka, Airflow, auth, topics and store; one line per check."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import structlog

from consumer.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from consumer.diagnostics import DEFAULT_TIMEOUT, CheckResult, diagnose
from consumer.errors import ConfigError
from consumer.settings import load_settings

HELP = "check Kafka, Airflow, credentials, topics, the DAG allow-list and the store"
PASSED, FAILED, WARNED = "✓", "✗", "⚠"


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags.

    Args:
        parser: the ``doctor`` subparser.
    """
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument(
        "--json", action="store_true", help="print the results as one JSON list instead of text"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds each Kafka or Airflow call may take (default {DEFAULT_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    """Run every check and print one verdict per check.

    Args:
        args: the parsed flags.

    Returns:
        ``EXIT_OK`` when every check passes (warnings pass), ``EXIT_FAILURE`` when one
        fails, ``EXIT_USAGE`` when the settings themselves are invalid.
    """
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"trigger-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _quiet_logs()
    results = diagnose(settings, timeout=args.timeout)
    if args.json:
        print(json.dumps([dataclasses.asdict(result) for result in results], indent=2))
    else:
        for result in results:
            print(format_line(result))
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAILURE


def format_line(result: CheckResult) -> str:
    """Render one result: ``✓ name: detail`` or ``✗ name: detail — remedy``.

    Args:
        result: the check's verdict.

    Returns:
        One line; a warning is marked ``⚠`` and carries its remedy too.
    """
    mark = PASSED if result.ok else FAILED
    if result.warning:
        mark = WARNED
    line = f"{mark} {result.name}: {result.detail}"
    if result.remedy is not None and (not result.ok or result.warning):
        line += f" — {result.remedy}"
    return line


def _quiet_logs() -> None:
    """Keep stdout for the verdicts: the clients' own logs would repeat them as noise."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    # kafka-python logs every refused connection; the kafka check already says why
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
