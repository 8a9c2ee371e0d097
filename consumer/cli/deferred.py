"""`trigger-consumer deferred`: what waits in the store by DAG and reason; ``--release`` a DAG.

The listing shows, per DAG and reason, how many requests wait, the oldest one's age on the
store's clock and the limit that applies (``consumer.flow.backlog``). ``--release DAG`` lets
a DAG's waiting requests through (``release_deferred``): the releaser triggers them on its
next pass, limits and ``not_before`` aside. A SQLite file that does not exist is not
created: nothing waits in it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog

from consumer.cli import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from consumer.errors import ConfigError, StoreUnavailableError, describe_error
from consumer.flow.backlog import Backlog, describe_limit, flow_limits, format_age, limit_of
from consumer.flow.config import FlowLimits
from consumer.logs import redact_secrets
from consumer.settings import Settings, load_settings
from consumer.store import SQLITE_SCHEME, IdempotencyStore, open_store
from consumer.store.redaction import display_url, mask_url_secrets

HELP = (
    "list the deferred requests waiting in the store by DAG and reason (count, oldest age, "
    "limit); --release DAG lets a DAG's waiting requests through now"
)
HEADINGS = ("DAG", "REASON", "WAITING", "OLDEST", "LIMIT")
COUNT_COLUMN = HEADINGS.index("WAITING")  # right-aligned
STORE_FAILURES = (StoreUnavailableError, sqlite3.Error, psycopg.Error, OSError)

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags: ``--json``, ``--release``, ``--config``.

    Args:
        parser: the ``deferred`` subparser.
    """
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the table"
    )
    parser.add_argument(
        "--release",
        action="append",
        default=[],
        metavar="DAG",
        help=(
            "let this DAG's waiting requests through now, limits and not_before aside "
            "(repeatable); prints how many"
        ),
    )
    parser.add_argument("--config", type=Path, help="TOML config file")


def run(args: argparse.Namespace) -> int:
    """List what waits, or release the DAGs named by ``--release``.

    Args:
        args: the parsed flags.

    Returns:
        ``EXIT_OK``; ``EXIT_USAGE`` for bad settings or a store that cannot be opened;
        ``EXIT_UNAVAILABLE`` when the store fails while read or written.
    """
    try:
        settings = load_settings(args.config)
        limits = flow_limits(settings)
    except (ConfigError, ValueError) as exc:
        print(f"trigger-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _quiet_logs()
    url = settings.store_url
    dags: list[str] = list(dict.fromkeys(args.release))
    try:
        if dags:
            released = _with_store(settings, lambda store: _release(store, dags))
            _print_released(display_url(url), released, as_json=args.json)
        else:
            backlog = _with_store(settings, lambda store: _read(store, settings.max_deferred))
            _print_backlog(display_url(url), backlog, limits, as_json=args.json)
    except ConfigError as exc:
        print(f"trigger-consumer: {mask_url_secrets(str(exc), url)}", file=sys.stderr)
        return EXIT_USAGE
    except STORE_FAILURES as exc:
        said = mask_url_secrets(describe_error(exc), url)
        print(f"trigger-consumer: store {display_url(url)}: {said}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _with_store(settings: Settings, work: Callable[[IdempotencyStore | None], T]) -> T:
    """Run ``work`` on the open store, or on None when its SQLite file does not exist."""
    url = settings.store_url
    path = url.removeprefix(SQLITE_SCHEME)
    if url.startswith(SQLITE_SCHEME) and (path == ":memory:" or not Path(path).exists()):
        return work(None)
    secret = settings.store_password
    password = None if secret is None else secret.get_secret_value()
    store = open_store(url, settings.dedup_retention, password=password)
    try:
        return work(store)
    finally:
        store.close()


def _read(store: IdempotencyStore | None, max_deferred: int) -> Backlog:
    """What waits in ``store`` (nothing when there is no store file yet)."""
    if store is None:
        return Backlog((), datetime.now(UTC), max_deferred)
    return Backlog.read(store.deferred_counts(), store.store_now(), max_deferred)


def _release(store: IdempotencyStore | None, dags: list[str]) -> list[tuple[str, int, list[str]]]:
    """Release each DAG; for a DAG with nothing released, the DAGs that do have requests waiting.

    Returns:
        (dag_id, how many were released, the DAGs waiting when it was none) per DAG.
    """
    if store is None:
        return [(dag, 0, []) for dag in dags]
    released = [(dag, store.release_deferred(dag)) for dag in dags]
    waiting: list[str] = []
    if any(count == 0 for _, count in released):
        waiting = sorted({count.dag_id for count in store.deferred_counts()})
    return [(dag, count, waiting if count == 0 else []) for dag, count in released]


def _requests(count: int) -> str:
    return f"{count} deferred request{'' if count == 1 else 's'}"


def _print_released(
    where: str, released: list[tuple[str, int, list[str]]], *, as_json: bool
) -> None:
    if as_json:
        found = [{"dag_id": dag, "released": count} for dag, count, _ in released]
        print(json.dumps({"store": where, "released": found}, indent=2))
        return
    for dag, count, waiting in released:
        if count:
            them = "it" if count == 1 else "them"
            after = f"the releaser triggers {them} now, limits aside"
            print(f"released {_requests(count)} of {dag}; {after}")
            continue
        others = f"DAGs waiting: {', '.join(waiting)}" if waiting else "nothing waits"
        none = f"none of its requests wait in {where} ({others})"
        print(f"released 0 deferred requests of {dag}: {none}")


def _print_backlog(where: str, backlog: Backlog, limits: FlowLimits, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_as_json(where, backlog, limits), indent=2))
        return
    if not backlog.lines:
        print(f"nothing deferred in {where} (MAX_DEFERRED {backlog.max_deferred})")
        return
    oldest = format_age(backlog.oldest_age) if backlog.oldest_age is not None else "-"
    print(
        f"{_requests(backlog.total)} in {where}, oldest {oldest} "
        f"(MAX_DEFERRED {backlog.max_deferred})"
    )
    rows = [HEADINGS] + [
        (
            line.dag_id,
            line.reason,
            str(line.count),
            format_age(line.oldest_age),
            describe_limit(limits, line.dag_id),
        )
        for line in backlog.lines
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADINGS) - 1)]
    for row in rows:
        cells = [
            cell.rjust(width) if column == COUNT_COLUMN else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        print("  ".join([*cells, row[-1]]))


def _as_json(where: str, backlog: Backlog, limits: FlowLimits) -> dict[str, Any]:
    oldest = backlog.oldest_age
    return {
        "store": where,
        "store_now": backlog.now.isoformat(),
        "total": backlog.total,
        "max_deferred": backlog.max_deferred,
        "oldest_age_seconds": None if oldest is None else oldest.total_seconds(),
        "deferred": [
            {
                "dag_id": line.dag_id,
                "reason": line.reason,
                "count": line.count,
                "oldest_created_at": line.oldest_created_at.isoformat(),
                "oldest_age_seconds": line.oldest_age.total_seconds(),
                "limit": limit_of(limits, line.dag_id),
            }
            for line in backlog.lines
        ],
    }


def _quiet_logs() -> None:
    """Keep stdout for the listing: the store's own warnings go to stderr, redacted."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
