"""`trigger-consumer audit`: do Kafka offsets, replies, the store and Airflow's runs agree?

For a range of the request topic (replay's range flags), it reads the requests, their
replies and dead letters, the group's commits, the store's entries and Airflow's runs
(``consumer.audit``), prints what disagrees (a table, or ``--json``) and exits 1 when
anything does. ``--repair`` re-drives, through replay's path, the requests the group
committed without a reply and without a run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import psycopg
import structlog
from kafka.errors import KafkaError

from consumer.audit import Reading, Report, Sources, read_history, reconcile, render, repair
from consumer.audit.reading import NoProgress, Progress
from consumer.cli import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from consumer.cli.ranges import UsageError, add_range_arguments, build_window
from consumer.cli.replay import UNREACHABLE
from consumer.errors import (
    AirflowError,
    ConfigError,
    ReplayError,
    ReplayWriteError,
    StoreUnavailableError,
    describe_error,
)
from consumer.kafka_io.preflight import check_connection
from consumer.logs import redact_secrets
from consumer.settings import Settings, load_settings
from consumer.store.redaction import display_url, mask_url_secrets

HELP = (
    "reconcile a range of the request topic with its replies, dead letters, the consumer "
    "group's commits, the store and Airflow's runs; exit 1 when they disagree"
)
REDRAW_INTERVAL = 0.1  # seconds between redraws of the terminal progress bar
BAR_WIDTH = 24


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags: replay's range flags, ``--dag``, ``--json``, ``--repair``, ``--config``.

    Args:
        parser: the ``audit`` subparser.
    """
    add_range_arguments(parser)
    parser.add_argument(
        "--dag",
        action="append",
        default=[],
        metavar="DAG_ID",
        help="only requests naming this DAG, and only its runs (repeatable)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the tables"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help=(
            "re-drive (as replay does) the requests the group committed without a reply and "
            "without a run"
        ),
    )
    parser.add_argument("--config", type=Path, help="TOML config file")


def run(args: argparse.Namespace) -> int:
    """Audit the range and print the report; exit 0 when it agrees, 1 when not."""
    try:
        settings = load_settings(args.config)
        window = build_window(args, now=datetime.now(UTC))
    except (ConfigError, UsageError, ValueError) as exc:
        print(f"trigger-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _quiet_logs()
    bar = _Bar(sys.stderr) if sys.stderr.isatty() else None
    progress: Progress = bar or NoProgress()
    try:
        check_connection(settings)  # refused credentials fail here instead of stalling below
        reading = read_history(
            settings,
            window=window,
            partition=args.partition,
            progress=progress,
            dags=frozenset(args.dag),
        )
        report = reconcile(reading.history)
        repaired = None
        if args.repair:
            progress.begin("repair", len(report.repairable))
            tally = repair(settings, report.repairable)
            repaired = sum(tally.replayed_by_topic.values())
    except (ReplayError, ConfigError) as exc:  # a missing topic; refused credentials
        return _fail(_masked(exc, settings), EXIT_USAGE, bar)
    except (*UNREACHABLE, KafkaError, ReplayWriteError) as exc:
        return _fail(f"Kafka: {describe_error(exc)}", EXIT_UNAVAILABLE, bar)
    except AirflowError as exc:  # unavailable (retries spent) or the listing refused
        return _fail(f"Airflow: {exc.message}", EXIT_UNAVAILABLE, bar)
    except (StoreUnavailableError, sqlite3.Error, psycopg.Error, OSError) as exc:
        return _fail(f"store: {_masked(exc, settings)}", EXIT_UNAVAILABLE, bar)
    if bar is not None:
        bar.clear()
    sources = _sources(settings, reading, dags=tuple(sorted(set(args.dag))))
    _print(report, sources, repaired, as_json=args.json)
    return EXIT_OK if report.agrees else EXIT_FAILURE


def _print(report: Report, sources: Sources, repaired: int | None, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(render.render_json(report, sources, repaired), indent=2))
    else:
        print(render.render_table(report, sources, repaired))


def _sources(settings: Settings, reading: Reading, *, dags: tuple[str, ...]) -> Sources:
    return Sources(
        dags=dags,
        request_topic=settings.request_topic,
        ranges=reading.ranges,
        reply_topics=reading.reply_topics,
        dlq_topic=settings.dlq_topic,
        group=settings.kafka_group_id,
        store=display_url(settings.store_url) if reading.store else None,
        airflow=settings.airflow_url,
        api_version=reading.api_version,
        runs=len(reading.history.runs),
    )


def _masked(exc: BaseException, settings: Settings) -> str:
    return mask_url_secrets(describe_error(exc), settings.store_url)


def _fail(message: str, code: int, bar: _Bar | None) -> int:
    if bar is not None:
        bar.clear()
    print(f"trigger-consumer: {message}", file=sys.stderr)
    return code


def _quiet_logs() -> None:
    """Keep stdout for the report; warnings (an Airflow call retried) go to stderr."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # failures are reported once, above


class _Bar:
    """A progress bar on a terminal: the stage, a bar when the total is known, the count."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._stage = ""
        self._total: int | None = None
        self._drawn = 0.0
        self._shown = False

    def begin(self, stage: str, total: int | None) -> None:
        self._stage, self._total = stage, total
        self._draw(0, force=True)

    def advance(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self._total = total
        self._draw(done, force=False)

    def _draw(self, done: int, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < REDRAW_INTERVAL:
            return
        self._drawn = now
        total = self._total
        if total:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            text = f"{self._stage} [{bar}] {done}/{total}"
        else:
            text = f"{self._stage}: {done}"
        self._stream.write(f"\r\x1b[K{text}")
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
