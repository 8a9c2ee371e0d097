"""Tests of consumer/resend.py: what each record of an answer becomes after a refusal (pure)."""

from __future__ import annotations

import pytest

from consumer.errors import SinkError
from consumer.pipeline.dead_letter import Omit
from consumer.resend import (
    REPLY_TOPIC_ATTEMPTS,
    Outgoing,
    Role,
    after_failure,
    first_send,
    pending,
)

REPLY = Outgoing(Role.REPLY)
LETTER = Outgoing(Role.DEAD_LETTER)


def refused(
    *unacked: int,
    too_large: tuple[int, ...] = (),
    topic: tuple[int, ...] = (),
    unsendable: tuple[int, ...] = (),
) -> SinkError:
    """A send's failure; positions index the records that were sent."""
    return SinkError(
        "test",
        unacked=list(unacked),
        too_large=list(too_large),
        topic_refused=list(topic),
        unsendable=list(unsendable),
    )


def test_first_send_is_the_reply_then_its_dead_letter() -> None:
    """An answer starts as its reply, plus a dead letter for rejected and error outcomes."""
    assert first_send(dead_letter=False) == (REPLY,)
    assert first_send(dead_letter=True) == (REPLY, LETTER)
    assert pending((REPLY, Outgoing(Role.DEAD_LETTER, acked=True))) == (0,)


@pytest.mark.parametrize(
    ("error", "expected", "at_once"),
    [
        # only the dead letter unacked, for no stated reason: the reply is acked; wait
        (refused(1), (Outgoing(Role.REPLY, acked=True), LETTER), False),
        # the dead letter too large: shrunk one step, sent again at once
        (
            refused(1, too_large=(1,)),
            (Outgoing(Role.REPLY, acked=True), Outgoing(Role.DEAD_LETTER, omit=Omit.VALUE)),
            True,
        ),
        # the producer refused the dead letter: shrunk to the bare record
        (
            refused(1, unsendable=(1,)),
            (
                Outgoing(Role.REPLY, acked=True),
                Outgoing(Role.DEAD_LETTER, omit=Omit.ALL),
            ),
            True,
        ),
        # the reply too large (keyed by a huge request key): sent without it, at once
        (
            refused(0, too_large=(0,)),
            (Outgoing(Role.REPLY, keyless=True), Outgoing(Role.DEAD_LETTER, acked=True)),
            True,
        ),
        # the reply's topic refused: counted, not yet redirected; wait
        (
            refused(0, topic=(0,)),
            (Outgoing(Role.REPLY, refusals=1), Outgoing(Role.DEAD_LETTER, acked=True)),
            False,
        ),
        # both unacked, no reason: unchanged; wait
        (refused(0, 1), (REPLY, LETTER), False),
    ],
)
def test_after_failure_changes_each_record_by_what_the_broker_said(
    error: SinkError, expected: tuple[Outgoing, ...], at_once: bool
) -> None:
    """Each row: a failed first send of reply and dead letter, and what follows from it."""
    assert after_failure((REPLY, LETTER), error) == (expected, at_once)


def test_positions_index_only_the_records_that_were_sent() -> None:
    """After the reply was acked, position 0 of the next failure is the dead letter."""
    states = (Outgoing(Role.REPLY, acked=True), LETTER)
    changed, at_once = after_failure(states, refused(0, too_large=(0,)))
    assert changed == (
        Outgoing(Role.REPLY, acked=True),
        Outgoing(Role.DEAD_LETTER, omit=Omit.VALUE),
    )
    assert at_once


def test_a_reply_topic_refused_often_enough_is_redirected_once() -> None:
    """The reply goes to the default topic after REPLY_TOPIC_ATTEMPTS refusals, then stays."""
    states: tuple[Outgoing, ...] = (REPLY,)
    for _ in range(REPLY_TOPIC_ATTEMPTS - 1):
        states, _ = after_failure(states, refused(0, topic=(0,)))
        assert not states[0].redirected
    states, _ = after_failure(states, refused(0, topic=(0,)))
    assert states[0] == Outgoing(Role.REPLY, refusals=REPLY_TOPIC_ATTEMPTS, redirected=True)
    states, _ = after_failure(states, refused(0, topic=(0,)))
    assert states[0].refusals == REPLY_TOPIC_ATTEMPTS


def test_a_dead_letter_too_large_shrinks_one_step_at_a_time_down_to_its_key() -> None:
    """Value, then the original headers, then the key: each refusal takes one more away."""
    states: tuple[Outgoing, ...] = (LETTER,)
    seen = []
    for _ in range(4):
        states, at_once = after_failure(states, refused(0, too_large=(0,)))
        seen.append((states[0].omit, at_once))
    assert seen == [
        (Omit.VALUE, True),
        (Omit.VALUE_AND_HEADERS, True),
        (Omit.ALL, True),
        (Omit.ALL, False),
    ]


def test_a_bare_dead_letter_refused_again_waits_instead_of_spinning() -> None:
    """A dead letter already without value, headers and key is not shrunk further: no busy loop."""
    bare = Outgoing(Role.DEAD_LETTER, omit=Omit.ALL)
    changed, at_once = after_failure((bare,), refused(0, too_large=(0,), unsendable=(0,)))
    assert changed == (bare,)
    assert not at_once
