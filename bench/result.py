"""One contender's figures: what the report prints and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.procstat import Usage
from bench.traffic import Replies


@dataclass
class Result:
    """The figures of one contender (or one point of the ceiling sweep).

    Attributes:
        name: the row label.
        family: ``ceiling``, ``naive``, ``floor``, ``worker``, ``replay``,
            ``duplicate-floor``, ``passthrough``, ``steady`` (the worker under an open-loop
            load), ``steady-direct`` (direct POSTs at the same rate), ``store-latency`` (one
            store operation, in process) or ``tracked``
            (``bench.tracked.TrackedResult``: latencies are run end → ``completed``).
        n: requests offered.
        done: requests answered (200 for the ceiling, a reply for the others).
        seconds: wall time from the first request to the last answer.
        latencies: per-request seconds (POST round trip, or produce → reply).
        airflow_calls: HTTP calls to Airflow (None when not known).
        errors: failed calls or error replies, plus requests never answered.
        usage: CPU and peak RSS of the process under test during the run (None: none).
        concurrency: concurrent calls (sweep clients, fixed limit, or the adaptive mean).
        note: a short remark for the table.
        load_share: a steady load's rate as a fraction of the API ceiling (None: a burst).
        offered_rate: a steady load's requests per second (None: a burst).
        limit_series: (seconds since the load began, concurrency limit) samples of a
            worker's limiter: the knee plot.
    """

    name: str
    family: str
    n: int
    done: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    airflow_calls: int | None = None
    errors: int = 0
    usage: Usage | None = None
    concurrency: float | None = None
    note: str = ""
    load_share: float | None = None
    offered_rate: float | None = None
    limit_series: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0-1) of the latencies, nearest rank; None without samples."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    @property
    def cpu_per_1000(self) -> float | None:
        """CPU seconds of the process under test per 1,000 answered requests."""
        if self.usage is None or not self.done:
            return None
        return self.usage.cpu_seconds * 1000 / self.done


def from_replies(
    name: str,
    family: str,
    sent: dict[str, int],
    replies: Replies,
    *,
    queued: bool = False,
    **extra: Any,
) -> Result:
    """A Kafka contender's result from its produce stamps and the replies collected.

    The time runs from the first request produced to the last reply; for a backlog
    queued before the contender started (``queued``), from its first reply instead.
    """
    answered = [k for k in sent if k in replies.at_ms]
    latencies = [(replies.at_ms[k] - sent[k]) / 1000 for k in answered]
    span = 0.0
    if answered:
        start = min(sent.values())
        if queued:
            start = min(replies.at_ms[k] for k in answered)
        span = (max(replies.at_ms[k] for k in answered) - start) / 1000
    return Result(
        name=name,
        family=family,
        n=len(sent),
        done=len(answered),
        seconds=span,
        latencies=latencies,
        errors=replies.errors + len(sent) - len(answered),
        **extra,
    )


def describe(result: Result) -> str:
    """A one-line summary for the console."""
    p50 = result.percentile(0.5)
    latency = f"p50 {1000 * p50:.0f} ms" if p50 is not None else "no answers"
    answered = f"{result.done}/{result.n} in {result.seconds:.1f} s = {result.rate:.1f}/s"
    return f"{answered}, {latency}, errors {result.errors}"
