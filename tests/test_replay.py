"""replay (pure parts): time parsing, windows, filters, destinations, headers, pacing, summary."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from consumer.errors import ErrorCode, Rejected
from consumer.outcome import Outcome
from consumer.pipeline.dead_letter import dead_letter_record
from consumer.pipeline.decode import decode
from consumer.pipeline.validate import validate
from consumer.record import InboundRecord, OutboundRecord
from consumer.replay import (
    Filters,
    OffsetRange,
    Window,
    dag_id_of,
    epoch_ms,
    matches,
    offset_range,
    pace_delay,
    parse_point_in_time,
    replay,
    replay_headers,
    replay_record,
)
from consumer.replay_destinations import Destination, Destinations, Via, source_topic_of
from consumer.replay_tally import Tally

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TO_REQUESTS = Destinations(request_topic="requests")
ORIGINAL_HEADERS = (("correlation-id", b"c"), ("trace", b"\xff\x00"), ("correlation-id", b"d"))


def dlq_record(
    *,
    offset: int = 7,
    code: str | None = "dag_not_found",
    value: bytes | None = b'{"idempotency_key": "k", "dag_id": "etl"}',
    timestamp_ms: int | None = 1000,
    source_topic: str | None = "requests",
) -> InboundRecord:
    """A record as the worker writes it to the dead-letter topic."""
    added: tuple[tuple[str, bytes], ...] = ()
    if code is not None:
        added = (
            ("error-code", code.encode()),
            ("error-message", b"no such DAG"),
            *(() if source_topic is None else (("source-topic", source_topic.encode()),)),
            ("source-partition", b"2"),
            ("source-offset", b"41"),
        )
    return InboundRecord(
        topic="dlq",
        partition=1,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=b"k",
        value=value,
        headers=ORIGINAL_HEADERS + added,
    )


# --- time parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-02-28T10:00:00Z", datetime(2025, 2, 28, 10, tzinfo=UTC)),
        (
            "2025-02-28T10:00:00.5+02:00",
            datetime(2025, 2, 28, 10, 0, 0, 500_000, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2h", NOW - timedelta(hours=2)),
        ("90s", NOW - timedelta(seconds=90)),
        (" 15m ", NOW - timedelta(minutes=15)),
        ("7d", NOW - timedelta(days=7)),
        ("250ms", NOW - timedelta(milliseconds=250)),
    ],
)
def test_point_in_time_is_a_timestamp_or_a_duration_ago(text: str, expected: datetime) -> None:
    """RFC 3339 timestamps are taken as they are; durations count back from now."""
    assert parse_point_in_time(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2025-02-28T10:00:00", "needs a zone"),
        ("2025", "not an RFC 3339 timestamp or a duration"),
        ("30", "not an RFC 3339 timestamp or a duration"),
        ("yesterday", "not an RFC 3339 timestamp or a duration"),
        ("", "not an RFC 3339 timestamp or a duration"),
        ("2w", "not an RFC 3339 timestamp or a duration"),
    ],
)
def test_point_in_time_refuses_ambiguous_text(text: str, reason: str) -> None:
    """A zoneless timestamp, a unitless number or other text is refused, saying why."""
    with pytest.raises(ValueError, match=reason):
        parse_point_in_time(text, now=NOW)


def test_epoch_ms_is_kafka_timestamp_unit() -> None:
    """An aware datetime becomes milliseconds since the epoch."""
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)) == 1500


# --- windows -----------------------------------------------------------------------------


def test_offset_range_is_clamped_to_the_partition() -> None:
    """The asked range is cut to [beginning, end captured at start)."""
    window = Window(from_offset=2, to_offset=100)
    assert offset_range(beginning=5, end=10, window=window) == OffsetRange(5, 10)
    assert offset_range(beginning=0, end=10, window=Window(from_offset=3, to_offset=6)) == (
        OffsetRange(3, 6)
    )
    assert offset_range(beginning=0, end=10, window=Window()) == OffsetRange(0, 10)


def test_offset_range_beyond_the_end_is_empty() -> None:
    """Offsets past the captured end select nothing rather than waiting for new records."""
    selected = offset_range(beginning=0, end=4, window=Window(from_offset=9))
    assert selected.empty
    assert selected == OffsetRange(9, 9)


def test_time_range_uses_the_offsets_found_by_timestamp() -> None:
    """``since`` starts at its offset; ``until`` stops before its offset."""
    window = Window(since_ms=100, until_ms=200)
    selected = offset_range(beginning=0, end=10, window=window, since_offset=3, until_offset=6)
    assert selected == OffsetRange(3, 6)


def test_time_range_with_no_record_that_recent_is_empty() -> None:
    """No offset at or after ``since`` means no record qualifies."""
    window = Window(since_ms=100)
    assert offset_range(beginning=0, end=10, window=window, since_offset=None).empty


def test_until_after_the_last_record_reads_to_the_end() -> None:
    """No offset at or after ``until`` means every record is older: read to the end."""
    window = Window(until_ms=100)
    assert offset_range(beginning=2, end=10, window=window, until_offset=None) == OffsetRange(2, 10)


def test_window_checks_each_record_timestamp() -> None:
    """Inside the time range: since inclusive, until exclusive; unknown times never qualify."""
    window = Window(since_ms=100, until_ms=200)
    assert [window.holds_time(t) for t in (99, 100, 199, 200, None, -1)] == [
        False,
        True,
        True,
        False,
        False,
        False,
    ]
    assert Window().holds_time(None)


# --- filters -------------------------------------------------------------------------------


def test_no_filter_matches_everything() -> None:
    """Without filters, records with and without error headers all match."""
    assert matches(dlq_record(), Filters())
    assert matches(dlq_record(code=None, value=b"\xff"), Filters())


def test_error_code_filter_matches_any_given_code() -> None:
    """``--error-code`` matches the header value; several codes match any of them."""
    filters = Filters(error_codes=frozenset({"dag_not_found", "airflow_unavailable"}))
    assert matches(dlq_record(code="dag_not_found"), filters)
    assert matches(dlq_record(code="airflow_unavailable"), filters)
    assert not matches(dlq_record(code="invalid_json"), filters)
    assert not matches(dlq_record(code=None), filters)


def test_dag_filter_matches_the_json_dag_id() -> None:
    """``--dag`` matches the value's ``dag_id``; other DAGs do not match."""
    filters = Filters(dag_ids=frozenset({"etl"}))
    assert matches(dlq_record(), filters)
    assert not matches(dlq_record(value=b'{"dag_id": "other"}'), filters)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"\xff\xfe",
        b"not json",
        b'["etl"]',
        b'"etl"',
        b'{"dag_id": 5}',
        b"{}",
        b"[" * 5000,
    ],
)
def test_unparseable_values_never_match_a_dag_filter(value: bytes | None) -> None:
    """Null, non-UTF-8, non-JSON, non-object or dag_id-less values never match ``--dag``."""
    assert dag_id_of(value) is None
    assert not matches(dlq_record(value=value), Filters(dag_ids=frozenset({"etl"})))


def test_filters_combine_with_and() -> None:
    """Both filters must match when both are given."""
    filters = Filters(error_codes=frozenset({"dag_not_found"}), dag_ids=frozenset({"etl"}))
    assert matches(dlq_record(), filters)
    assert not matches(dlq_record(code="invalid_json"), filters)
    assert not matches(dlq_record(value=b'{"dag_id": "other"}'), filters)


# --- header rewriting ----------------------------------------------------------------------


def test_replay_drops_the_dead_letter_headers_and_names_its_source() -> None:
    """The five worker headers go; the original ones stay in order; replayed-from is added."""
    assert replay_headers(dlq_record(offset=7)) == (
        *ORIGINAL_HEADERS,
        ("replayed-from", b"dlq/1/7"),
    )


def test_replay_keeps_key_and_value_bytes() -> None:
    """The replayed record has the original key and value, on the target topic."""
    source = dlq_record()
    replayed = replay_record(source, topic="requests")
    assert replayed.topic == "requests"
    assert replayed.key == source.key
    assert replayed.value == source.value


def test_dead_letter_then_replay_restores_the_original_headers() -> None:
    """A request dead-lettered by the worker and replayed carries its own headers again."""
    original = InboundRecord("requests", 4, 99, 0, b"\x00key", b"{}", ORIGINAL_HEADERS)
    outcome = Outcome.rejected(original, Rejected(ErrorCode.INVALID_JSON, "bad"))
    dead = dead_letter_record(outcome, original, topic="dlq")
    stored = InboundRecord("dlq", 0, 3, 0, dead.key, dead.value, dead.headers)
    replayed = replay_record(stored, topic="requests")
    assert (replayed.key, replayed.value) == (original.key, original.value)
    assert replayed.headers == (*ORIGINAL_HEADERS, ("replayed-from", b"dlq/0/3"))


def test_a_second_replay_names_only_its_own_source() -> None:
    """An earlier replayed-from header is replaced, so there is exactly one."""
    earlier = (("replayed-from", b"dlq/0/1"), ("trace", b"t"))
    record = InboundRecord("dlq", 0, 9, 0, b"k", b"{}", (*earlier, ("error-code", b"x")))
    assert replay_headers(record) == (("trace", b"t"), ("replayed-from", b"dlq/0/9"))


# --- pacing and the replay loop ------------------------------------------------------------


def test_pace_delay_spreads_records_over_time() -> None:
    """At rate N, record i may go out i/N seconds after the first; unlimited never waits."""
    assert pace_delay(sent=0, rate=10, elapsed=0) == 0
    assert pace_delay(sent=5, rate=10, elapsed=0.2) == pytest.approx(0.3)
    assert pace_delay(sent=5, rate=10, elapsed=0.7) == 0
    assert pace_delay(sent=1000, rate=None, elapsed=0) == 0


def test_replay_loop_tallies_and_sends_matched_records() -> None:
    """Only matched records are sent, rewritten; the tally counts them by error code."""
    records = [
        dlq_record(offset=0, code="dag_not_found"),
        dlq_record(offset=1, code="invalid_json", value=b"{"),
        dlq_record(offset=2, code="dag_not_found"),
        dlq_record(offset=3, code=None),
    ]
    sent: list[OutboundRecord] = []
    tally = replay(
        records,
        destinations=TO_REQUESTS,
        window=Window(),
        filters=Filters(dag_ids=frozenset({"etl"})),
        send=sent.append,
    )
    assert [record.headers[-1] for record in sent] == [
        ("replayed-from", b"dlq/1/0"),
        ("replayed-from", b"dlq/1/2"),
        ("replayed-from", b"dlq/1/3"),
    ]
    assert (tally.read, tally.matched) == (4, 3)
    assert tally.by_error_code == {"dag_not_found": 2, "none": 1}


def test_replay_loop_stops_at_the_limit_and_skips_records_outside_the_time_range() -> None:
    """``limit`` bounds matched records; a record timestamp outside the window is skipped."""
    records = iter([dlq_record(offset=i, timestamp_ms=100 * i) for i in range(10)])
    matched: list[InboundRecord] = []
    tally = replay(
        records,
        destinations=TO_REQUESTS,
        window=Window(since_ms=200),
        filters=Filters(),
        send=None,
        limit=2,
        on_match=lambda record, _: matched.append(record),
    )
    assert [record.offset for record in matched] == [2, 3]
    assert (tally.read, tally.matched) == (4, 2)
    assert next(records).offset == 4  # reading stopped right at the limit


def test_a_copy_without_its_value_is_counted_but_never_replayed() -> None:
    """A dead-letter record sent without its value would arrive empty: it is skipped, said."""
    whole = dlq_record(offset=0)
    shrunk = dlq_record(offset=1)
    shrunk = dataclasses.replace(
        shrunk, value=b"", headers=(*shrunk.headers, ("value-omitted-bytes", b"10000008"))
    )
    sent: list[OutboundRecord] = []
    tally = replay(
        [whole, shrunk],
        destinations=TO_REQUESTS,
        window=Window(),
        filters=Filters(),
        send=sent.append,
    )
    assert [record.headers[-1] for record in sent] == [("replayed-from", b"dlq/1/0")]
    assert (tally.matched, tally.without_value) == (2, 1)
    assert "1 skipped: dead-lettered without their value" in tally.summary(dry_run=False)


def test_summary_line_counts_by_topic_and_error_code() -> None:
    """The summary says read, matched, replayed (or would replay), per topic and per code."""
    tally = Tally(read=5, matched=3)
    tally.by_error_code.update({"invalid_json": 1, "dag_not_found": 2})
    for _ in range(3):
        tally.count(Destination("requests", Via.SOURCE_TOPIC))
    assert tally.summary(dry_run=True) == (
        "read 5, matched 3, would replay 3; by topic: requests=3; "
        "by error-code: dag_not_found=2, invalid_json=1"
    )
    assert tally.summary(dry_run=False).startswith("read 5, matched 3, replayed 0; by error-code")
    tally.acknowledge(3)
    assert tally.summary(dry_run=False) == (
        "read 5, matched 3, replayed 3; by topic: requests=3; "
        "by error-code: dag_not_found=2, invalid_json=1"
    )
    assert Tally(read=2).summary(dry_run=True) == "read 2, matched 0, would replay 0"


# --- destinations --------------------------------------------------------------------------

ROUTED = Destinations(request_topic="requests", route_topics=frozenset({"orders", "files"}))


@pytest.mark.parametrize(
    ("source_topic", "expected"),
    [
        ("requests", Destination("requests", Via.SOURCE_TOPIC)),
        ("orders", Destination("orders", Via.SOURCE_TOPIC)),
        ("files", Destination("files", Via.SOURCE_TOPIC)),
        (None, Destination("requests", Via.NO_SOURCE_TOPIC)),
        ("", Destination("requests", Via.NO_SOURCE_TOPIC)),
        ("old-orders", Destination("old-orders", Via.NOT_READ)),
    ],
)
def test_a_record_goes_back_to_its_source_topic_when_the_configuration_reads_it(
    source_topic: str | None, expected: Destination
) -> None:
    """Request topic or a route topic: there; no header: the request topic; else skipped."""
    assert ROUTED.choose(dlq_record(source_topic=source_topic)) == expected


@pytest.mark.parametrize("source_topic", ["requests", "orders", "old-orders", None])
def test_to_topic_overrides_every_source_topic(source_topic: str | None) -> None:
    """With --to-topic, every record goes there, whatever its source-topic header says."""
    destinations = dataclasses.replace(ROUTED, to_topic="elsewhere")
    assert destinations.choose(dlq_record(source_topic=source_topic)) == Destination(
        "elsewhere", Via.TO_TOPIC
    )


def test_source_topic_of_reads_the_dead_letter_header() -> None:
    """The source-topic header, decoded; None without one."""
    assert source_topic_of(dlq_record(source_topic="orders")) == "orders"
    assert source_topic_of(dlq_record(code=None)) is None


def test_replay_loop_sends_each_record_to_its_destination_and_counts_per_topic() -> None:
    """A mixed DLQ: each record to its own topic; a stray and a missing topic are skipped."""
    records = [
        dlq_record(offset=0, source_topic="requests"),
        dlq_record(offset=1, source_topic="orders"),
        dlq_record(offset=2, source_topic=None),
        dlq_record(offset=3, source_topic="old-orders"),
        dlq_record(offset=4, source_topic="files"),
        dlq_record(offset=5, source_topic="orders"),
    ]
    sent: list[OutboundRecord] = []
    listed: list[tuple[int, Destination]] = []
    asked: list[str] = []

    def exists(topic: str) -> bool:
        asked.append(topic)
        return topic != "files"

    tally = replay(
        records,
        destinations=ROUTED,
        window=Window(),
        filters=Filters(),
        send=sent.append,
        topic_exists=exists,
        on_match=lambda record, destination: listed.append((record.offset, destination)),
    )
    assert [(record.topic, record.headers[-1][1]) for record in sent] == [
        ("requests", b"dlq/1/0"),
        ("orders", b"dlq/1/1"),
        ("requests", b"dlq/1/2"),
        ("orders", b"dlq/1/5"),
    ]
    assert [destination.via for _, destination in listed] == [
        Via.SOURCE_TOPIC,
        Via.SOURCE_TOPIC,
        Via.NO_SOURCE_TOPIC,
        Via.NOT_READ,
        Via.MISSING,
        Via.SOURCE_TOPIC,
    ]
    assert "old-orders" not in asked  # a topic nobody reads is not even looked up
    assert tally.sent == {"requests": 2, "orders": 2}
    assert (tally.without_source, tally.not_read, tally.missing) == (
        1,
        {"old-orders": 1},
        {"files": 1},
    )
    assert tally.replayed == 0  # nothing counts as replayed before the broker's acks
    tally.acknowledge(3)  # the writer confirms in send order and stops at the first failure
    assert tally.replayed_by_topic == {"requests": 2, "orders": 1}
    line = tally.summary(dry_run=False)
    assert "replayed 3; by topic: orders=1, requests=2;" in line
    assert "1 without a source-topic header: to the request topic" in line
    assert "1 skipped, source topic not read by this configuration (old-orders=1)" in line
    assert "1 skipped, topic does not exist (files=1)" in line


def test_a_copy_without_its_value_is_skipped_before_its_destination_is_chosen() -> None:
    """A value-omitted copy is skipped as such, even from a source topic nobody reads."""
    shrunk = dlq_record(source_topic="old-orders")
    shrunk = dataclasses.replace(
        shrunk, value=b"", headers=(*shrunk.headers, ("value-omitted-bytes", b"10000008"))
    )
    tally = replay([shrunk], destinations=ROUTED, window=Window(), filters=Filters(), send=None)
    assert (tally.without_value, tally.not_read, tally.sent) == (1, {}, {})
    assert tally.skipped == 1


def test_replay_rerun_stamps_every_record_and_the_worker_reads_it() -> None:
    """``--rerun ID``: a ``rerun-id`` header, last, which validation turns into ``rerun``."""
    stamped = (("rerun-id", b"old"),)
    source = dataclasses.replace(dlq_record(), headers=ORIGINAL_HEADERS + stamped)
    replayed = replay_record(source, topic="requests", stamp=(("rerun-id", b"replay-7"),))
    assert replayed.headers[-1] == ("rerun-id", b"replay-7")
    request = validate(decode(replayed.value or b""), headers=replayed.headers)
    assert request.rerun is not None
    assert (request.rerun.id, request.rerun.only_failed) == ("replay-7", False)
    body = b'{"idempotency_key": "k", "dag_id": "etl", "rerun": {"id": "own"}}'
    own = validate(decode(body), headers=replayed.headers)
    assert own.rerun is not None
    assert own.rerun.id == "own"  # the request's own field wins over the header
