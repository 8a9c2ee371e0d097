"""`trigger-consumer replay`: re-drive dead-lettered or past records to where they came from."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NoBrokersAvailable

from consumer.cli import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from consumer.cli.ranges import UsageError, add_range_arguments, build_window, non_negative_int
from consumer.contract import RERUN_ID_HEADER, rerun_id_from_headers
from consumer.errors import (
    ConfigError,
    KafkaUnreachableError,
    ReplayError,
    ReplayStalledError,
    ReplayWriteError,
)
from consumer.kafka_io.preflight import check_connection
from consumer.kafka_io.reader import open_reader, plan_ranges, read_records, topic_exists
from consumer.kafka_io.security import connection_options
from consumer.kafka_io.writer import RecordWriter
from consumer.record import Headers, InboundRecord
from consumer.replay import (
    Filters,
    Window,
    dag_id_of,
    error_code_of,
    replay,
    replayed_from,
)
from consumer.replay_destinations import Destination, Destinations, source_topic_of
from consumer.replay_tally import Tally
from consumer.settings import Settings, load_settings

HELP = (
    "re-drive dead-lettered (or any past) records: each back to its source topic (the request "
    "topic or a route topic), or all to --to-topic"
)
PROGRESS_INTERVAL = 0.2  # seconds between redraws of the terminal progress counter
# errors that mean "the broker could not be reached", not "the broker said no"
UNREACHABLE = (
    NoBrokersAvailable,
    KafkaTimeoutError,
    KafkaConnectionError,
    KafkaUnreachableError,
    ReplayStalledError,
)


def _positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags.

    Args:
        parser: the ``replay`` subparser.
    """
    parser.add_argument("--from-topic", help="topic to read (default: the configured DLQ topic)")
    parser.add_argument(
        "--to-topic",
        help=(
            "topic to write every record to (default: each record's source-topic header, when "
            "the request topic or a route topic; without that header, the request topic)"
        ),
    )
    add_range_arguments(parser)
    parser.add_argument(
        "--error-code",
        action="append",
        default=[],
        metavar="CODE",
        help="only records with this error-code header (repeatable)",
    )
    parser.add_argument(
        "--dag",
        action="append",
        default=[],
        metavar="DAG_ID",
        help="only records whose JSON value has this dag_id (repeatable)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; write nothing"
    )
    parser.add_argument(
        "--rate", type=_positive_float, metavar="N", help="at most N records per second"
    )
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="replay at most N records")
    parser.add_argument(
        "--rerun",
        type=_rerun_id,
        metavar="ID",
        help="stamp every re-driven record with this re-run id (a rerun-id header): requests "
        "whose key already has a run re-run it, once per ID",
    )
    parser.add_argument("--config", type=Path, help="TOML config file")


def run(args: argparse.Namespace) -> int:
    """Replay the selected records and print a summary line on stderr."""
    try:
        settings = load_settings(args.config)
        window = build_window(args, now=datetime.now(UTC))
    except (ConfigError, UsageError, ValueError) as exc:
        print(f"trigger-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    source = args.from_topic or settings.dlq_topic
    destinations = Destinations(
        request_topic=settings.request_topic,
        route_topics=frozenset(settings.routes.topics()),
        to_topic=args.to_topic,
    )
    filters = Filters(error_codes=frozenset(args.error_code), dag_ids=frozenset(args.dag))
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    tally = Tally()
    try:
        tally = _replay(
            args,
            settings=settings,
            source=source,
            destinations=destinations,
            window=window,
            filters=filters,
            progress=progress,
        )
    except (ReplayError, ConfigError) as exc:  # ConfigError: refused credentials or certificate
        return _fail(f"{exc}", EXIT_USAGE, progress)
    except ReplayWriteError as exc:
        code = EXIT_UNAVAILABLE if isinstance(exc.__cause__, UNREACHABLE) else EXIT_FAILURE
        return _fail(f"{exc}", code, progress)
    except UNREACHABLE as exc:
        return _fail(f"Kafka unreachable: {_describe(exc)}", EXIT_UNAVAILABLE, progress)
    except KafkaError as exc:
        return _fail(f"Kafka error: {_describe(exc)}", EXIT_FAILURE, progress)
    if progress is not None:
        progress.clear()
    for line in _explain_skips(tally, destinations, dry_run=args.dry_run):
        print(f"trigger-consumer: {line}", file=sys.stderr)
    target = args.to_topic or "source topics"
    print(
        f"trigger-consumer replay {source} -> {target}: {tally.summary(dry_run=args.dry_run)}",
        file=sys.stderr,
    )
    return EXIT_OK


def _rerun_id(text: str) -> str:
    """A ``--rerun`` value: what the worker accepts as ``rerun.id``."""
    if rerun_id_from_headers(((RERUN_ID_HEADER, text.encode("utf-8")),)) is None:
        raise argparse.ArgumentTypeError("must be 1-128 characters, no control characters")
    return text


def _stamp(rerun_id: str | None) -> Headers:
    return () if rerun_id is None else ((RERUN_ID_HEADER, rerun_id.encode("utf-8")),)


def _explain_skips(tally: Tally, destinations: Destinations, *, dry_run: bool) -> list[str]:
    """One line per topic whose records were skipped, and one for the fallback, if any."""
    lines = [
        f"skipped {n} record(s) from topic {topic!r}: this configuration reads it neither as "
        "the request topic nor through a route, so nothing would read them there; "
        "--to-topic TOPIC replays them to TOPIC"
        for topic, n in sorted(tally.not_read.items())
    ]
    lines += [
        f"skipped {n} record(s) for topic {topic!r}: it does not exist"
        for topic, n in sorted(tally.missing.items())
    ]
    if tally.without_source:
        went = "would go" if dry_run else "went"
        lines.append(
            f"{tally.without_source} record(s) without a source-topic header {went} to the "
            f"request topic {destinations.request_topic!r}"
        )
    return lines


def _replay(
    args: argparse.Namespace,
    *,
    settings: Settings,
    source: str,
    destinations: Destinations,
    window: Window,
    filters: Filters,
    progress: _Progress | None,
) -> Tally:
    check_connection(settings)  # refused credentials fail here instead of stalling below
    connection = connection_options(settings)
    reader = open_reader(connection)
    try:
        target = destinations.to_topic
        if target is not None and not topic_exists(reader, target):
            raise ReplayError(f"topic {target!r} does not exist")
        known: dict[str, bool] = {}

        def exists(topic: str) -> bool:
            if topic not in known:
                known[topic] = topic_exists(reader, topic)
            return known[topic]

        ranges = plan_ranges(reader, source, partition=args.partition, window=window)
        records = read_records(reader, source, ranges)
        if args.dry_run:
            return replay(
                records,
                destinations=destinations,
                window=window,
                filters=filters,
                send=None,
                topic_exists=exists,
                limit=args.limit,
                on_match=_list_record,
                on_progress=progress,
            )
        writer = RecordWriter(connection)
        try:
            tally = replay(
                records,
                destinations=destinations,
                window=window,
                filters=filters,
                send=writer.send,
                topic_exists=exists,
                limit=args.limit,
                rate=args.rate,
                on_progress=progress,
                stamp=_stamp(args.rerun),
            )
            # spec: count as replayed only what the broker acknowledged
            tally.acknowledge(writer.confirm())
            return tally
        finally:
            writer.close()
    finally:
        reader.close()


def _list_record(record: InboundRecord, destination: Destination) -> None:
    """Print one JSON line per matched record of a dry run: where it would go, or why not."""
    key = None if record.key is None else record.key.decode("utf-8", "backslashreplace")
    skipped = destination.via.skipped
    print(
        json.dumps(
            {
                "replayed_from": replayed_from(record),
                "key": key,
                "error_code": error_code_of(record),
                "dag_id": dag_id_of(record.value),
                "timestamp_ms": record.timestamp_ms,
                "source_topic": source_topic_of(record),
                "to_topic": None if skipped else destination.topic,
                "skipped": destination.via.value if skipped else None,
            }
        ),
        flush=True,
    )


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _fail(message: str, code: int, progress: _Progress | None) -> int:
    if progress is not None:
        progress.clear()
    print(f"trigger-consumer: {message}", file=sys.stderr)
    return code


class _Progress:
    """An in-place counter on a terminal, redrawn at most every ``PROGRESS_INTERVAL``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn = 0.0

    def __call__(self, tally: Tally) -> None:
        now = time.monotonic()
        if now - self._drawn < PROGRESS_INTERVAL:
            return
        self._drawn = now
        self._stream.write(f"\rread {tally.read}, matched {tally.matched}")
        self._stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
