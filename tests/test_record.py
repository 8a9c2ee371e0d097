"""record: plain Kafka record values and header look-up."""

from __future__ import annotations

import dataclasses

import pytest

from consumer.record import InboundRecord, OutboundRecord


def test_header_returns_the_last_value_of_a_name() -> None:
    """header() finds the last header with that exact name, or None."""
    record = InboundRecord(
        "t", 0, 0, None, None, None, headers=(("a", b"1"), ("b", b"2"), ("a", b"3"))
    )
    assert record.header("a") == b"3"
    assert record.header("b") == b"2"
    assert record.header("A") is None


def test_records_are_frozen_values() -> None:
    """Records compare by value and cannot be changed."""
    first = OutboundRecord("t", b"k", b"v", (("h", b"x"),))
    assert first == OutboundRecord("t", b"k", b"v", (("h", b"x"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.topic = "other"  # type: ignore[misc]
