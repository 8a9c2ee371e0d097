"""Tests of consumer/durations.py: durations written with a unit, or as plain seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consumer.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("250ms", timedelta(milliseconds=250)),
        ("12", timedelta(seconds=12)),
        (1.5, timedelta(seconds=1.5)),
    ],
)
def test_durations_accept_units(text: object, expected: timedelta) -> None:
    """Durations are written with s, m, h, d or ms, or as plain seconds."""
    assert parse_duration(text) == expected
