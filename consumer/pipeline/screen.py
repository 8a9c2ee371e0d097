"""Screen: a message's pure stages, decode → validate → policy (spec §1), and their refusal.

``screen`` runs them in order and gives the valid, allowed request or a ``Refusal`` saying
which stage refused it and what could be read before. It imports no I/O library: the
worker's pipeline, the routes' derived requests and ``cli validate`` all screen through it.
Stages stop a message by raising ``Rejected``, caught only in ``attempt`` (STYLE §5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from consumer.contract import TriggerRequest
from consumer.errors import Rejected
from consumer.limits import Limits
from consumer.pipeline.decode import decode
from consumer.pipeline.policy import Policy, check_policy
from consumer.pipeline.validate import validate
from consumer.record import Headers

P = ParamSpec("P")
T = TypeVar("T")


def attempt(stage: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | Rejected:
    """Run ``stage(*args, **kwargs)``: its value, or the ``Rejected`` it raised.

    The one place ``Rejected`` is caught (STYLE §5). The arguments are passed, not closed
    over, so the per-message path builds no closure.
    """
    try:
        return stage(*args, **kwargs)
    except Rejected as rejected:  # stages stop a message by raising Rejected (STYLE §5)
        return rejected


@dataclass(frozen=True)
class Refusal:
    """Why the pure stages refused a message, with what could be read before.

    Attributes:
        rejected: the refusal a stage raised.
        request: the valid request, when policy refused it.
        payload: the decoded object, when decoding got that far.
    """

    rejected: Rejected
    request: TriggerRequest | None
    payload: Mapping[str, Any] | None


def screen(
    value: bytes | None,
    limits: Limits,
    policy: Policy,
    headers: Headers = (),
    *,
    read: Callable[[], Mapping[str, Any]] | None = None,
) -> TriggerRequest | Refusal:
    """Decode, validate and check policy: the pipeline's pure stages (spec §1).

    Args:
        value: the message value.
        limits: size and depth bounds.
        policy: the allow-lists.
        headers: the record's headers (a ``correlation-id`` header fills in the request's).
        read: builds the payload instead of decoding ``value`` (a route's derived request).

    Returns:
        The valid, allowed request, or the refusal.
    """
    payload = attempt(decode, value, limits) if read is None else attempt(read)
    if isinstance(payload, Rejected):
        return Refusal(payload, None, None)
    request = attempt(validate, payload, limits, headers=headers)
    if isinstance(request, Rejected):
        return Refusal(request, None, payload)
    refused = attempt(check_policy, request, policy)
    if isinstance(refused, Rejected):
        return Refusal(refused, request, payload)
    return request
