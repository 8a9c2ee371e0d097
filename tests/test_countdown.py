"""Countdown: an event record is done once every derived request is answered."""

from __future__ import annotations

from consumer.countdown import Countdown
from consumer.record import InboundRecord

RECORD = InboundRecord("t", 0, 1, None, None, b"{}")


def test_done_only_after_the_last_answer_and_abandoned_wins() -> None:
    """Two shares: done after both; one abandoned share frees the slot without done."""
    calls: list[str] = []
    countdown = Countdown(RECORD, 2, lambda _r: calls.append("done"), lambda: calls.append("end"))
    countdown.answered(RECORD)
    assert calls == []
    countdown.answered(RECORD)
    assert calls == ["done"]
    other = Countdown(RECORD, 2, lambda _r: calls.append("done2"), lambda: calls.append("end2"))
    other.abandoned()
    other.answered(RECORD)
    assert calls == ["done", "end2"]
    Countdown(RECORD, 0, lambda _r: calls.append("none"), lambda: None)
    assert calls[-1] == "none"
