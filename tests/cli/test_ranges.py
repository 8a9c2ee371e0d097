"""The range flags `replay` and `audit` share: parsing and the window they build (pure)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from consumer.cli.ranges import UsageError, add_range_arguments, build_window
from consumer.replay import Window, epoch_ms

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def parse(*argv: str) -> argparse.Namespace:
    """Parse ``argv`` with only the range flags."""
    parser = argparse.ArgumentParser()
    add_range_arguments(parser)
    return parser.parse_args(argv)


def test_offset_range_and_partition() -> None:
    """--partition, --from-offset and --to-offset land in the namespace and the window."""
    args = parse("--partition", "2", "--from-offset", "3", "--to-offset", "9")
    assert args.partition == 2
    assert build_window(args, now=NOW) == Window(from_offset=3, to_offset=9)


def test_time_range_accepts_timestamps_and_durations() -> None:
    """--since takes a duration ago, --until an RFC 3339 timestamp; both become epoch ms."""
    args = parse("--since", "2h", "--until", "2026-12-07T11:30:00Z")
    window = build_window(args, now=NOW)
    assert window.since_ms == epoch_ms(datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    assert window.until_ms == epoch_ms(datetime(2026, 12, 7, 11, 30, tzinfo=UTC))


def test_no_flags_is_the_whole_topic() -> None:
    """Without range flags the window bounds nothing."""
    assert build_window(parse(), now=NOW) == Window()


@pytest.mark.parametrize(
    "argv",
    [
        ("--from-offset", "1", "--since", "1h"),
        ("--from-offset", "5", "--to-offset", "4"),
        ("--since", "1h", "--until", "2h"),
    ],
    ids=["mixed", "reversed-offsets", "reversed-times"],
)
def test_ranges_that_do_not_fit_are_usage_errors(argv: tuple[str, ...]) -> None:
    """Mixed or reversed ranges raise UsageError before anything is read."""
    with pytest.raises(UsageError):
        build_window(parse(*argv), now=NOW)


def test_negative_offsets_are_refused_by_the_parser() -> None:
    """A negative offset is an argparse error (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        parse("--from-offset", "-1")
    assert exited.value.code == 2


def test_a_time_without_zone_is_a_value_error() -> None:
    """A naive timestamp names the missing zone."""
    with pytest.raises(ValueError, match="zone"):
        build_window(parse("--since", "2026-12-07T10:00:00"), now=NOW)
