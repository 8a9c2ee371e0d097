"""Observers: what watches each answered request, at one hook (STYLE §2, dramatiq's middleware).

The answerer calls every observer's ``request_done(record, outcome, timing)`` once a
request's answer is acknowledged, and nowhere else::

    answer acked ─► offset may commit ─► for each observer: request_done(record, outcome, timing)
                                             ├─ MetricsObserver  outcomes, latencies, retries
                                             └─ LogObserver      the request_done log line

An observer that raises is logged and the others still run: watching never changes what
happens to a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from consumer.logs import message_fields
from consumer.metrics import Metrics
from consumer.outcome import Outcome
from consumer.record import InboundRecord

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the parts of one request took.

    Attributes:
        airflow_seconds: its Airflow calls, when it made any; None for an answer from the
            store or a rejection.
    """

    airflow_seconds: float | None = None


NO_AIRFLOW = Timing()


class Observer(Protocol):
    """Watches answered requests."""

    def request_done(self, record: InboundRecord, outcome: Outcome, timing: Timing) -> None:
        """The request's answer was acknowledged by the broker."""


class MetricsObserver:
    """Prometheus metrics of each answered request, read from its ``Outcome``."""

    def __init__(self, metrics: Metrics) -> None:
        """Observe into ``metrics``."""
        self._metrics = metrics

    def request_done(self, record: InboundRecord, outcome: Outcome, timing: Timing) -> None:
        """Count the outcome, its end-to-end latency, its Airflow call time and retries."""
        if timing.airflow_seconds is not None and outcome.attempts:
            self._metrics.observe_airflow_call(str(outcome.status), timing.airflow_seconds)
        e2e = None
        if record.timestamp_ms is not None:
            e2e = time.time() - record.timestamp_ms / 1000
        code = str(outcome.error_code) if outcome.error_code else None
        self._metrics.observe_outcome(str(outcome.status), code, e2e)
        if outcome.attempts > 1:
            self._metrics.count_retry(outcome.attempts - 1)
        if outcome.status == "duplicate" and outcome.attempts == 0:
            self._metrics.count_dedup_hit()


class LogObserver:
    """The ``request_done`` log line of each answered request."""

    def request_done(self, record: InboundRecord, outcome: Outcome, timing: Timing) -> None:
        """Log the status and code with the message's identifiers."""
        # a replay is thousands of duplicates a second, each already in its reply and the
        # dedup-hit metric: a line apiece at info would cost a third of the rate
        level = logging.DEBUG if outcome.status == "duplicate" else logging.INFO
        # the identifiers as fields, not bound: binding costs a duplicate 10 % of its CPU
        log.log(
            level,
            "request_done",
            status=str(outcome.status),
            code=outcome.error_code,
            **message_fields(record, outcome.idempotency_key, outcome.dag_id),
        )


def notify(
    observers: Sequence[Observer], record: InboundRecord, outcome: Outcome, timing: Timing
) -> None:
    """Tell every observer; one that raises is logged and the rest still run."""
    for observer in observers:
        try:
            observer.request_done(record, outcome, timing)
        except Exception:  # watching never changes what happens to a request
            log.exception("observer_failed", observer=type(observer).__name__)
