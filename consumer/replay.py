"""Replay: which past records to re-drive, where to, and how (spec §6).

The selection (offset or time window per partition), the filters (``error-code`` header,
``dag_id``), the header rewrite and the pacing are pure functions here; the destination
(``consumer.replay_destinations``: each record back to its ``source-topic``, or every
record to ``--to-topic``) and the count (``consumer.replay_tally``) have modules of their
own, and ``replay`` runs them all over any iterable of records. The Kafka side lives in
``consumer.kafka_io``:
``reader`` (a group-less reader: assign + seek, bounded by the end offsets captured at
start) and ``writer`` (an ``acks=all`` producer confirmed at the end). Replayed records
keep their key, so the worker's deduplication makes a second replay of the same record
harmless.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consumer.durations import parse_duration
from consumer.pipeline.dead_letter import (
    DEAD_LETTER_HEADERS,
    ERROR_CODE_HEADER,
    VALUE_OMITTED_HEADER,
)
from consumer.record import Headers, InboundRecord, OutboundRecord
from consumer.replay_destinations import Destination, Destinations, Via
from consumer.replay_tally import Tally

REPLAYED_FROM_HEADER = "replayed-from"
# the worker adds these when dead-lettering; replay strips them (and an older replayed-from)
DROPPED_HEADERS = frozenset((*DEAD_LETTER_HEADERS, REPLAYED_FROM_HEADER))
NO_ERROR_CODE = "none"

ProgressCallback = Callable[[Tally], None]
TopicCheck = Callable[[str], bool]


@dataclass(frozen=True)
class Window:
    """Which offsets of each partition to read: an offset range or a time range.

    Attributes:
        from_offset: first offset to read (inclusive); None: the partition's beginning.
        to_offset: offset to stop at (exclusive); None: the end captured at start.
        since_ms: first record timestamp to read (inclusive, epoch ms); None: no bound.
        until_ms: record timestamp to stop at (exclusive, epoch ms); None: no bound.
    """

    from_offset: int | None = None
    to_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def holds_time(self, timestamp_ms: int | None) -> bool:
        """Tell whether a record timestamp lies inside the time range.

        Record timestamps need not grow with offsets (producers set them), so the offsets
        found by timestamp are only bounds; each record is checked too.

        Args:
            timestamp_ms: the record timestamp; None when the broker gave none.

        Returns:
            True when there is no time range, or the timestamp is known and inside it.
        """
        if self.since_ms is None and self.until_ms is None:
            return True
        if timestamp_ms is None or timestamp_ms < 0:
            return False
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms < self.until_ms


@dataclass(frozen=True)
class Filters:
    """Which records are replayed; an empty set does not filter.

    Attributes:
        error_codes: ``error-code`` header values to match (any of them).
        dag_ids: ``dag_id`` values of the JSON value to match (any of them).
    """

    error_codes: frozenset[str] = frozenset()
    dag_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class OffsetRange:
    """The offsets ``start <= offset < stop`` of one partition."""

    start: int
    stop: int

    @property
    def empty(self) -> bool:
        """Whether the range holds no offset."""
        return self.stop <= self.start


def parse_point_in_time(text: str, *, now: datetime) -> datetime:
    """Turn an RFC 3339 timestamp or a duration ("2h": two hours ago) into a point in time.

    Args:
        text: ``2025-01-31T12:00:00Z``, ``2025-01-31T12:00:00+01:00``, or a duration
            with a unit (``90s``, ``15m``, ``2h``, ``7d``).
        now: the aware datetime durations count back from.

    Returns:
        An aware datetime.

    Raises:
        ValueError: for a timestamp without a zone, a duration without a unit, or text
            that is neither.
    """
    stripped = text.strip()
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        moment = None
    if moment is not None:
        if moment.tzinfo is None:
            raise ValueError(f"{text!r}: an RFC 3339 timestamp needs a zone (Z or +hh:mm)")
        return moment
    # a bare number would be ambiguous (seconds? a year?), so durations need a unit
    if not stripped or not stripped[-1].isalpha():
        raise ValueError(f"{text!r}: not an RFC 3339 timestamp or a duration like 2h")
    try:
        ago: timedelta = parse_duration(stripped)
    except ValueError:
        raise ValueError(f"{text!r}: not an RFC 3339 timestamp or a duration like 2h") from None
    return now - ago


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (Kafka's timestamp unit).

    Args:
        moment: an aware datetime.

    Returns:
        The timestamp in milliseconds.
    """
    return int(moment.timestamp() * 1000)


def dag_id_of(value: bytes | None) -> str | None:
    """Read ``dag_id`` from a request value, when the value is a JSON object holding one.

    Args:
        value: the raw record value.

    Returns:
        The ``dag_id`` string, or None when the value is null, not JSON, not an object,
        or has no string ``dag_id``.
    """
    if value is None:
        return None
    try:
        payload: Any = json.loads(value)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(payload, dict):
        return None
    dag_id = payload.get("dag_id")
    return dag_id if isinstance(dag_id, str) else None


def error_code_of(record: InboundRecord) -> str | None:
    """Read the ``error-code`` header the worker wrote when dead-lettering.

    Args:
        record: a record of the source topic.

    Returns:
        The decoded header value, or None when the record has none.
    """
    raw = record.header(ERROR_CODE_HEADER)
    return None if raw is None else raw.decode("utf-8", "replace")


def matches(record: InboundRecord, filters: Filters) -> bool:
    """Tell whether a record passes every filter.

    Args:
        record: a record of the source topic.
        filters: the ``--error-code`` and ``--dag`` filters.

    Returns:
        True when each non-empty filter matches; an unparseable value never matches
        a ``dag_id`` filter.
    """
    if filters.error_codes and error_code_of(record) not in filters.error_codes:
        return False
    return not filters.dag_ids or dag_id_of(record.value) in filters.dag_ids


def replayed_from(record: InboundRecord) -> str:
    """Name the record a replay copies: ``<topic>/<partition>/<offset>``.

    Args:
        record: the source record.

    Returns:
        The ``replayed-from`` header value.
    """
    return f"{record.topic}/{record.partition}/{record.offset}"


def replay_headers(record: InboundRecord) -> Headers:
    """The headers of a replayed record: the original ones, minus the dead-letter ones.

    The five headers the worker added when dead-lettering are dropped, as is the
    ``replayed-from`` of an earlier replay: the new record names only its own source.
    Every other header is kept in order, duplicates included.

    Args:
        record: the source record.

    Returns:
        The kept headers followed by ``replayed-from``.
    """
    kept = tuple((name, value) for name, value in record.headers if name not in DROPPED_HEADERS)
    return (*kept, (REPLAYED_FROM_HEADER, replayed_from(record).encode("utf-8")))


def replay_record(record: InboundRecord, *, topic: str, stamp: Headers = ()) -> OutboundRecord:
    """Build the record to publish for a source record: same key and value bytes.

    Args:
        record: the source record.
        topic: the target topic.
        stamp: headers added last (``replay --rerun``'s ``rerun-id``: the last one counts).

    Returns:
        The record for the target topic; the key is never changed (dedup relies on it).
    """
    headers = (*replay_headers(record), *stamp)
    return OutboundRecord(topic=topic, key=record.key, value=record.value, headers=headers)


def offset_range(
    *,
    beginning: int,
    end: int,
    window: Window,
    since_offset: int | None = None,
    until_offset: int | None = None,
) -> OffsetRange:
    """The offsets of one partition a replay reads, clamped to what the partition holds.

    Args:
        beginning: the partition's first offset.
        end: the partition's end offset captured at start (the replay never reads past it).
        window: the offset range asked for, if any.
        since_offset: the first offset at or after ``window.since_ms``; None with a
            ``since_ms`` means no record is that recent.
        until_offset: the first offset at or after ``window.until_ms``; None: no such record.

    Returns:
        The range to read; empty when nothing qualifies.
    """
    start = max(beginning, window.from_offset or 0)
    stop = end if window.to_offset is None else min(end, window.to_offset)
    if window.since_ms is not None:
        start = max(start, end if since_offset is None else since_offset)
    if window.until_ms is not None and until_offset is not None:
        stop = min(stop, until_offset)
    return OffsetRange(start, max(start, stop))


def pace_delay(*, sent: int, rate: float | None, elapsed: float) -> float:
    """How long to wait before the next record so that at most ``rate`` go out per second.

    Args:
        sent: records sent so far.
        rate: the maximum records per second; None: unlimited.
        elapsed: seconds since the first record was sent.

    Returns:
        Seconds to wait (0 when the next record may go now).
    """
    if rate is None or sent == 0:
        return 0.0
    return max(0.0, sent / rate - elapsed)


def replay(
    records: Iterable[InboundRecord],
    *,
    destinations: Destinations,
    window: Window,
    filters: Filters,
    send: Callable[[OutboundRecord], None] | None,
    topic_exists: TopicCheck | None = None,
    limit: int | None = None,
    rate: float | None = None,
    on_match: Callable[[InboundRecord, Destination], None] | None = None,
    on_progress: ProgressCallback | None = None,
    stamp: Headers = (),
) -> Tally:
    """Select, filter, route and forward records; the caller confirms the sends afterwards.

    Args:
        records: the source records (``kafka_io.reader.read_records``).
        destinations: where each record goes.
        window: checked per record for its timestamp (the offsets are already bounded).
        filters: the ``--error-code`` and ``--dag`` filters.
        send: publishes one record; None for a dry run.
        topic_exists: tells whether a destination exists (asked for each record: cache
            it); records for one that does not are skipped. None: every topic exists.
        limit: stop after this many matched records; None: no limit.
        rate: at most this many records per second; None: unlimited.
        on_match: called with each matched record and its destination (a dry run lists
            them).
        on_progress: called after each record read, with the running tally.
        stamp: headers added to every record sent (``replay --rerun``).

    Returns:
        The tally; ``acknowledge`` is left for the caller to call with the acks.
    """
    tally = Tally()
    started: float | None = None
    for record in records:
        tally.read += 1
        if window.holds_time(record.timestamp_ms) and matches(record, filters):
            tally.matched += 1
            tally.by_error_code[error_code_of(record) or NO_ERROR_CODE] += 1
            destination = _destination(record, destinations, topic_exists)
            tally.count(destination)
            if on_match is not None:
                on_match(record, destination)
            if send is not None and destination.topic is not None and not destination.via.skipped:
                started = _pace(started, sum(tally.sent.values()) - 1, rate)
                send(replay_record(record, topic=destination.topic, stamp=stamp))
        if on_progress is not None:
            on_progress(tally)
        if limit is not None and tally.matched >= limit:
            break
    return tally


def _destination(
    record: InboundRecord, destinations: Destinations, topic_exists: TopicCheck | None
) -> Destination:
    if record.header(VALUE_OMITTED_HEADER) is not None:
        return Destination(None, Via.VALUE_OMITTED)
    chosen = destinations.choose(record)
    if chosen.via.skipped or chosen.topic is None or topic_exists is None:
        return chosen
    if not topic_exists(chosen.topic):
        # a producer may create a topic it writes to; one nobody created has no reader
        return Destination(chosen.topic, Via.MISSING)
    return chosen


def _pace(started: float | None, sent: int, rate: float | None) -> float:
    now = time.monotonic()
    if started is None:
        return now
    delay = pace_delay(sent=sent, rate=rate, elapsed=now - started)
    if delay > 0:
        time.sleep(delay)  # the --rate limit: the only wait a replay makes on purpose
    return started
