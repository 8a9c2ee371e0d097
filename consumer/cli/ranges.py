"""The range flags `replay` and `audit` share: which offsets or times of a topic to read.

``add_range_arguments`` adds ``--partition``, ``--from-offset``/``--to-offset`` and
``--since``/``--until``; ``build_window`` turns them into a ``consumer.replay.Window``.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from consumer.replay import Window, epoch_ms, parse_point_in_time


class UsageError(Exception):
    """Raised for flags that parse one by one but do not fit together."""


def non_negative_int(text: str) -> int:
    """Parse a flag value that must be an integer of 0 or more.

    Args:
        text: the flag's text.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: for anything else (argparse prints it as a usage error).
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def add_range_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--partition``, the offset range and the time range.

    Args:
        parser: a command's subparser.
    """
    parser.add_argument(
        "--partition", type=non_negative_int, metavar="N", help="read only this partition"
    )
    offsets = parser.add_argument_group("offset range (per partition)")
    offsets.add_argument(
        "--from-offset", type=non_negative_int, metavar="N", help="first offset (inclusive)"
    )
    offsets.add_argument(
        "--to-offset", type=non_negative_int, metavar="N", help="offset to stop at (exclusive)"
    )
    times = parser.add_argument_group(
        "time range (record timestamps; RFC 3339 with a zone, or a duration ago like 2h)"
    )
    times.add_argument("--since", metavar="TIME", help="first timestamp (inclusive)")
    times.add_argument("--until", metavar="TIME", help="timestamp to stop at (exclusive)")


def build_window(args: argparse.Namespace, *, now: datetime) -> Window:
    """The offset or time range the flags ask for.

    Args:
        args: the parsed flags.
        now: the moment durations such as ``2h`` count back from.

    Returns:
        The window.

    Raises:
        UsageError: when offsets and times are mixed or a range is reversed.
        ValueError: when ``--since`` or ``--until`` is not a time.
    """
    by_offset = args.from_offset is not None or args.to_offset is not None
    by_time = args.since is not None or args.until is not None
    if by_offset and by_time:
        raise UsageError("choose an offset range or a time range, not both")
    if None not in (args.from_offset, args.to_offset) and args.to_offset < args.from_offset:
        raise UsageError("--to-offset must not be below --from-offset")
    since = None if args.since is None else epoch_ms(parse_point_in_time(args.since, now=now))
    until = None if args.until is None else epoch_ms(parse_point_in_time(args.until, now=now))
    if since is not None and until is not None and until <= since:
        raise UsageError("--until must be later than --since")
    return Window(
        from_offset=args.from_offset, to_offset=args.to_offset, since_ms=since, until_ms=until
    )
