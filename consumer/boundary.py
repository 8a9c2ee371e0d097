"""The per-message boundary: a bug while handling one message answers it, never stops the loop.

STYLE §5: unexpected exceptions are caught in one place. Every step of a message's handling
that can meet a bug (screening on the loop thread, judging the store's entry, executing on
a dispatcher thread, building its answer) runs through ``guarded``, which logs the
traceback with the message's identifiers and gives the ``internal_error`` outcome the
message is then answered with (spec §2). Control-flow signals pass through: a worker that
is stopping (``StoppingError``) or misconfigured (``ConfigError``) is not a bug.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import structlog

from consumer.contract import TriggerRequest
from consumer.errors import ConfigError, StoppingError
from consumer.logs import bind_message
from consumer.outcome import Outcome
from consumer.record import InboundRecord

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def guarded(
    record: InboundRecord,
    request: TriggerRequest | None,
    step: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T | Outcome:
    """Run one step of a message's handling: its value, or the message's internal error.

    Args:
        record: the message's record.
        request: its valid request, when screening got that far (named in the log line).
        step: the work; its arguments follow, passed rather than closed over, so the
            per-message path builds no closure.
        *args: positional arguments of ``step``.
        **kwargs: keyword arguments of ``step``.

    Returns:
        What ``step`` returned, or the ``internal_error`` outcome of a bug it met.

    Raises:
        StoppingError: the worker is stopping or the partition was revoked.
        ConfigError: credentials or TLS are wrong: the worker must stop.
    """
    try:
        return step(*args, **kwargs)
    except (StoppingError, ConfigError):
        raise
    except Exception as exc:  # the per-message boundary (STYLE §5): a bug never stops the loop
        key, dag = (request.idempotency_key, request.dag_id) if request else (None, None)
        with bind_message(record, key, dag):
            log.exception("internal_error")
        return Outcome.internal_error(record, exc, request=request)
