"""Re-sending an answer: what each of its records becomes after the broker refused it (spec §3).

An answer is a reply and, for ``rejected`` and ``error``, a dead letter. When the broker
does not acknowledge all of it, only the unacknowledged records are sent again, each
changed by what the broker said of it::

    acknowledged ─────────────────────────► never sent again
    dead letter too large / unsendable ───► shrunk (Omit), sent again at once
    reply too large ──────────────────────► without the request's key, sent again at once
    reply, its topic refused ─────────────► counted; after REPLY_TOPIC_ATTEMPTS refusals
                                            sent to the default reply topic instead
    anything else ────────────────────────► sent again after a delay

``after_failure`` is that table, pure; the answerer only builds, sends and waits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from consumer.errors import SinkError
from consumer.pipeline.dead_letter import Omit

# refusals of a request's own reply topic (missing, not authorised) after which its reply
# goes to the default reply topic instead, so that the partition goes on (spec §3)
REPLY_TOPIC_ATTEMPTS = 5


class Role(enum.Enum):
    """What a record of an answer is."""

    REPLY = "reply"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record of an answer, as far as re-sending is concerned.

    Attributes:
        role: the reply or the dead letter.
        acked: the broker acknowledged it: it is not sent again.
        omit: what the dead letter leaves out of the original record.
        refusals: how often the broker refused the reply's own topic.
        redirected: the reply goes to the default reply topic instead of its own.
        keyless: the reply is sent without a key (the request's own key was too large).
    """

    role: Role
    acked: bool = False
    omit: Omit = Omit.NOTHING
    refusals: int = 0
    redirected: bool = False
    keyless: bool = False


def first_send(dead_letter: bool) -> tuple[Outgoing, ...]:
    """The records of an answer before anything was sent: the reply, then its dead letter."""
    reply = Outgoing(Role.REPLY)
    return (reply, Outgoing(Role.DEAD_LETTER)) if dead_letter else (reply,)


def pending(states: tuple[Outgoing, ...]) -> tuple[int, ...]:
    """Positions of the records still to send, in order."""
    return tuple(index for index, state in enumerate(states) if not state.acked)


def after_failure(
    states: tuple[Outgoing, ...], error: SinkError
) -> tuple[tuple[Outgoing, ...], bool]:
    """The records after a send of the pending ones failed with ``error``.

    Args:
        states: the answer's records before that send.
        error: what the broker said; its positions index the records that were sent,
            which were ``pending(states)``, in order.

    Returns:
        The new states, and whether to send again at once: True when a record was changed
        in a way that can make it succeed (a dead letter shrunk), so no delay is needed.
    """
    sent = pending(states)
    unacked = {sent[position] for position in error.unacked}
    too_large = {sent[position] for position in error.too_large}
    unsendable = {sent[position] for position in error.unsendable}
    refused = {sent[position] for position in error.topic_refused}
    changed = list(states)
    at_once = False
    for index in sent:
        state = states[index]
        if index not in unacked:
            changed[index] = replace(state, acked=True)
        elif state.role is Role.DEAD_LETTER and index in unsendable:
            at_once = at_once or state.omit < Omit.ALL
            changed[index] = replace(state, omit=Omit.ALL)
        elif state.role is Role.DEAD_LETTER and index in too_large:
            at_once = at_once or state.omit < Omit.ALL
            changed[index] = replace(state, omit=Omit(min(state.omit + 1, Omit.ALL)))
        elif state.role is Role.REPLY and index in too_large and not state.keyless:
            at_once = True
            changed[index] = replace(state, keyless=True)
        elif state.role is Role.REPLY and index in refused and not state.redirected:
            refusals = state.refusals + 1
            redirect = refusals >= REPLY_TOPIC_ATTEMPTS
            changed[index] = replace(state, refusals=refusals, redirected=redirect)
    return tuple(changed), at_once
