"""Reading an audit's history in bulk: requests, replies, dead letters, commits, store, runs.

Kafka is read with replay's bounded reader (``kafka_io.reader``, ``read_committed`` as the
worker reads): the request topic in the asked range, then each reply topic and the
dead-letter topic from ``SKEW`` before the range's first request to their end (replies
come after their requests; ``SKEW`` allows for clocks that disagree). The store is asked
once for all keys (``get_many``), Airflow through list endpoints (``airflow.listing``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from kafka import KafkaConsumer

from consumer.airflow.connection import AirflowConnection
from consumer.airflow.listing import ListedRun, RunLister
from consumer.audit.history import (
    Answer,
    Claim,
    DeadLetter,
    History,
    Request,
    Run,
    RunRef,
    answer_of,
    dead_letter_of,
    request_of,
)
from consumer.audit.reconcile import expected_run, names_run
from consumer.diagnostics.kafka_checks import retrying
from consumer.kafka_io.clients import Connection, open_admin
from consumer.kafka_io.reader import open_reader, plan_ranges, read_records, topic_exists
from consumer.record import InboundRecord
from consumer.replay import OffsetRange, Window, dag_id_of
from consumer.settings import Settings
from consumer.store import SQLITE_SCHEME, open_store

# how far replies, dead letters and runs are looked for before the range's first request:
# the clocks of producers, workers and Airflow may disagree by this much
SKEW = timedelta(minutes=5)
GROUP_TIMEOUT = 10.0  # seconds a fresh cluster may answer "coordinator not available"


class Progress(Protocol):
    """Told what the audit reads; a terminal draws it as a bar."""

    def begin(self, stage: str, total: int | None) -> None:
        """A stage starts: ``total`` items are expected (None: unknown)."""
        ...

    def advance(self, done: int, total: int | None = None) -> None:
        """``done`` items of the stage are read (``total`` when it became known)."""
        ...


class NoProgress:
    """A ``Progress`` that shows nothing (off a terminal)."""

    def begin(self, stage: str, total: int | None) -> None:
        """Show nothing."""

    def advance(self, done: int, total: int | None = None) -> None:
        """Show nothing."""


@dataclass(frozen=True)
class Reading:
    """What ``read_history`` read, and from where.

    Attributes:
        history: the values to reconcile.
        reply_topics: the reply topics read.
        ranges: the planned offset range per partition of the request topic.
        api_version: the Airflow API the runs came from, or None when none were listed.
        store: whether a store was read (an absent SQLite file is not created).
    """

    history: History
    reply_topics: tuple[str, ...]
    ranges: dict[int, OffsetRange]
    api_version: str | None
    store: bool


def read_history(
    settings: Settings,
    *,
    window: Window,
    partition: int | None,
    progress: Progress,
    dags: frozenset[str] = frozenset(),
) -> Reading:
    """Read everything an audit reconciles.

    Args:
        settings: the worker's settings (topics, group, store, Airflow).
        window: the offset or time range of the request topic.
        partition: only this partition of it; None: all.
        progress: told what is being read.
        dags: only requests naming these DAGs, and only their runs; empty: all.

    Returns:
        The reading.

    Raises:
        ReplayError: the request topic or partition does not exist.
        ReplayStalledError: a topic stopped giving records.
        KafkaError: the broker failed.
        AirflowError, AirflowUnavailableError, ConfigError: Airflow refused or is down.
        ConfigError, StoreUnavailableError, sqlite3.Error, psycopg.Error: the store failed.
    """
    topic = settings.request_topic
    reader = open_reader(settings, read_committed=True)
    try:
        ranges = plan_ranges(reader, topic, partition=partition, window=window)
        requests = tuple(
            request_of(record)
            for record in _read(reader, topic, ranges, progress, "requests")
            if window.holds_time(record.timestamp_ms)
            and (not dags or dag_id_of(record.value) in dags)
        )
        first = _first_ms(requests, window)
        reply_topics = reply_topics_of(
            settings.reply_topic, settings.reply_topic_allowlist, requests
        )
        answered = (
            _Answered((), (), 0)
            if first is None
            else _read_answers(
                reader,
                settings,
                reply_topics=reply_topics,
                requests=requests,
                first_ms=first,
                progress=progress,
            )
        )
    finally:
        reader.close()
    committed = read_committed_offsets(settings, settings.kafka_group_id, topic)
    claims, store = read_claims(settings, {r.key for r in requests if r.key is not None})
    bounded = window.to_offset is not None or window.until_ms is not None
    partial = History(requests=requests, answers=answered.answers, claims=claims)
    runs, api_version = (
        ({}, None)
        if first is None
        else _read_runs(settings, _moment(first) - SKEW, wanted_runs(partial), progress)
    )
    if dags:
        runs = {ref: run for ref, run in runs.items() if run.dag_id in dags}
    last = max([answered.last_ms, *(r.timestamp_ms or 0 for r in requests)])
    history = History(
        requests=requests,
        answers=answered.answers,
        dead_letters=answered.letters,
        committed=committed,
        claims=claims,
        runs=runs,
        orphans_since=None if first is None else _moment(first),
        orphans_until=_moment(last) if bounded and first is not None else None,
    )
    return Reading(history, reply_topics, ranges, api_version, store)


@dataclass(frozen=True)
class _Answered:
    """The replies and dead letters read, and the latest reply to a request of the range."""

    answers: tuple[Answer, ...]
    letters: tuple[DeadLetter, ...]
    last_ms: int


def _read_answers(
    reader: KafkaConsumer,
    settings: Settings,
    *,
    reply_topics: tuple[str, ...],
    requests: tuple[Request, ...],
    first_ms: int,
    progress: Progress,
) -> _Answered:
    """Every reply and dead letter written since ``SKEW`` before ``first_ms``."""
    since = Window(since_ms=first_ms - int(SKEW.total_seconds() * 1000))
    places = {request.place for request in requests}
    answers: list[Answer] = []
    last_ms = 0
    for reply_topic in reply_topics:
        for record in _read_since(reader, reply_topic, since, progress, "replies"):
            answer = answer_of(record)
            if answer is not None:
                answers.append(answer)
                if answer.source in places:
                    last_ms = max(last_ms, record.timestamp_ms or 0)
    letters = [
        letter
        for record in _read_since(reader, settings.dlq_topic, since, progress, "dead letters")
        if (letter := dead_letter_of(record)) is not None
    ]
    return _Answered(tuple(answers), tuple(letters), last_ms)


def read_committed_offsets(
    connection: Connection, group: str, topic: str
) -> dict[tuple[str, int], int]:
    """The consumer group's committed offset per partition of ``topic``.

    Args:
        connection: the settings or their connection options.
        group: the worker's consumer group.
        topic: the request topic.

    Returns:
        (topic, partition) → the next offset the group will read; partitions without a
        commit are absent.
    """
    admin = open_admin(connection)
    try:
        offsets = retrying(lambda: admin.list_consumer_group_offsets(group), GROUP_TIMEOUT)
    finally:
        admin.close()
    return {
        (tp.topic, tp.partition): meta.offset
        for tp, meta in offsets.items()
        if tp.topic == topic and meta.offset >= 0
    }


def read_claims(settings: Settings, keys: set[str]) -> tuple[dict[str, Claim], bool]:
    """What the store holds for ``keys``, in one ``get_many``.

    Args:
        settings: the store URL, password and retention.
        keys: idempotency keys.

    Returns:
        The claims by key, and whether a store was read: a SQLite file that does not
        exist is not created, and counts as an empty store.
    """
    url = settings.store_url
    if url.startswith(SQLITE_SCHEME):
        path = url.removeprefix(SQLITE_SCHEME)
        if path == ":memory:" or not Path(path).exists():
            return {}, False
    secret = settings.store_password
    store = open_store(
        url,
        settings.dedup_retention,
        password=None if secret is None else secret.get_secret_value(),
    )
    try:
        entries = store.get_many(sorted(keys)) if keys else {}
    finally:
        store.close()
    return {
        key: Claim(status=str(entry.status), dag_id=entry.dag_id, dag_run_id=entry.dag_run_id)
        for key, entry in entries.items()
    }, True


def _read_runs(
    settings: Settings, since: datetime, wanted: set[RunRef], progress: Progress
) -> tuple[dict[RunRef, Run], str]:
    """Runs touched since ``since``, then the wanted ones that listing left out."""
    progress.begin("runs", None)
    lister = RunLister(
        AirflowConnection.from_settings(settings),
        on_page=progress.advance,
    )
    try:
        listed = lister.touched_since(since)
        runs = {(run.dag_id, run.dag_run_id): _run(run) for run in listed}
        left_out = wanted - runs.keys()
        if left_out:
            progress.begin("older runs", None)
            runs.update(((run.dag_id, run.dag_run_id), _run(run)) for run in lister.find(left_out))
        return runs, lister.api_version
    finally:
        lister.close()


def wanted_runs(history: History) -> set[RunRef]:
    """Every run whose existence the reconciliation judges.

    Args:
        history: the requests, replies and store entries read so far.

    Returns:
        The runs the requests' keys derive, those their replies name and the store's.
    """
    places = {request.place for request in history.requests}
    wanted = {run for request in history.requests if (run := expected_run(request)) is not None}
    wanted.update(
        run
        for answer in history.answers
        if answer.source in places and names_run(answer) and (run := answer.run) is not None
    )
    wanted.update((claim.dag_id, claim.dag_run_id) for claim in history.claims.values())
    return wanted


def _run(run: ListedRun) -> Run:
    return Run(dag_id=run.dag_id, dag_run_id=run.dag_run_id, state=run.state, created=run.created)


def reply_topics_of(
    default: str, allowed: Collection[str], requests: Iterable[Request]
) -> tuple[str, ...]:
    """The reply topics to read: the default one, then each allowed one a request named.

    A ``reply_topic`` off the allow-list was rejected, and its reply went to the default
    topic; one on it got the reply there.

    Args:
        default: the default reply topic.
        allowed: the reply-topic allow-list.
        requests: the requests of the range.

    Returns:
        The topics, the default first, the others sorted.
    """
    named = {r.reply_topic for r in requests if r.reply_topic is not None}
    return (default, *sorted(topic for topic in named & set(allowed) if topic != default))


def _read(
    reader: KafkaConsumer,
    topic: str,
    ranges: dict[int, OffsetRange],
    progress: Progress,
    stage: str,
) -> Iterator[InboundRecord]:
    total = sum(max(0, r.stop - r.start) for r in ranges.values())
    progress.begin(f"{stage} ({topic})", total)
    for done, record in enumerate(read_records(reader, topic, ranges), start=1):
        progress.advance(done)
        yield record


def _read_since(
    reader: KafkaConsumer, topic: str, since: Window, progress: Progress, stage: str
) -> Iterator[InboundRecord]:
    if not topic_exists(reader, topic):
        return
    ranges = plan_ranges(reader, topic, partition=None, window=since)
    yield from _read(reader, topic, ranges, progress, stage)


def _first_ms(requests: tuple[Request, ...], window: Window) -> int | None:
    """The earliest moment the range covers: its first request's timestamp, or ``--since``."""
    stamps = [r.timestamp_ms for r in requests if r.timestamp_ms is not None]
    if window.since_ms is not None:
        stamps.append(window.since_ms)
    return min(stamps, default=None)


def _moment(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)
