"""The backlog: what waits deferred in the store, by DAG and reason, and each DAG's limit.

Read by operators (``trigger-consumer deferred``, ``doctor``), never by the releaser: a
plain value built from ``deferred_counts()`` and ``store_now()``, so that every age is on
the store's clock (the database server's on PostgreSQL), like ``created_at`` itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consumer.flow.config import FlowLimits
from consumer.settings import Settings
from consumer.store.deferred import DeferredCount

NEAR_FULL = 0.8  # of MAX_DEFERRED: back-pressure is near (doctor warns)


def flow_limits(settings: Settings) -> FlowLimits:
    """The flow limits the worker applies under ``settings`` (as ``assembly`` builds them)."""
    return FlowLimits.build(settings.dag_limits, settings.airflow_max_queued_runs)


def limit_of(limits: FlowLimits, dag_id: str) -> dict[str, Any]:
    """The limits that apply to ``dag_id``, as plain values (``--json``).

    Returns:
        ``max_queued_runs`` and ``rate`` of the first matching ``[[dag_limits]]`` entry and
        ``airflow_max_queued_runs``; None where unset.
    """
    entry = limits.limit_for(dag_id)
    rate = None if entry is None or entry.rate is None else str(entry.rate)
    return {
        "max_queued_runs": None if entry is None else entry.max_queued_runs,
        "rate": rate,
        "airflow_max_queued_runs": limits.airflow_max_queued_runs,
    }


def describe_limit(limits: FlowLimits, dag_id: str) -> str:
    """The limits that apply to ``dag_id`` in words: ``max_queued_runs 20, rate 120/min``.

    Returns:
        The limits; ``none`` when the DAG is not limited (only ``not_before`` defers it).
    """
    limit = limit_of(limits, dag_id)
    parts = [f"{name} {limit[name]}" for name in ("max_queued_runs", "rate") if limit[name]]
    if limits.airflow_max_queued_runs is not None:
        parts.append(f"AIRFLOW_MAX_QUEUED_RUNS {limits.airflow_max_queued_runs}")
    return ", ".join(parts) or "none"


def format_age(age: timedelta) -> str:
    """An age in its two largest units: ``45s``, ``3m04s``, ``2h05m``, ``3d04h``."""
    seconds = max(int(age.total_seconds()), 0)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    if days:
        return f"{days}d{hour:02d}h"
    if hours:
        return f"{hours}h{minute:02d}m"
    return f"{minutes}m{second:02d}s" if minutes else f"{second}s"


@dataclass(frozen=True)
class BacklogLine:
    """What waits of one DAG for one reason.

    Attributes:
        dag_id: the DAG.
        reason: a ``DeferralReason`` value.
        count: how many requests wait.
        oldest_created_at: when the oldest was deferred (store clock).
        oldest_age: how long it has waited (store clock; never negative).
    """

    dag_id: str
    reason: str
    count: int
    oldest_created_at: datetime
    oldest_age: timedelta


@dataclass(frozen=True)
class Backlog:
    """Everything that waits in one store, read at ``now`` on its clock.

    Attributes:
        lines: one per (dag_id, reason) with requests waiting, by dag_id then reason.
        now: the store's clock when the counts were read.
        max_deferred: ``MAX_DEFERRED``: the worker stops fetching at this total.
    """

    lines: tuple[BacklogLine, ...]
    now: datetime
    max_deferred: int

    @classmethod
    def read(cls, counts: Sequence[DeferredCount], now: datetime, max_deferred: int) -> Backlog:
        """The backlog of the store's ``deferred_counts()`` read at ``store_now()``."""
        lines = tuple(
            BacklogLine(
                count.dag_id,
                count.reason,
                count.count,
                count.oldest_created_at,
                max(now - count.oldest_created_at, timedelta(0)),
            )
            for count in counts
        )
        return cls(lines, now, max_deferred)

    @property
    def total(self) -> int:
        """How many requests wait, every DAG and reason together."""
        return sum(line.count for line in self.lines)

    @property
    def oldest_age(self) -> timedelta | None:
        """How long the oldest request has waited; None when nothing waits."""
        return max((line.oldest_age for line in self.lines), default=None)

    def by_dag(self) -> list[tuple[str, int]]:
        """Each DAG's waiting requests (every reason), most first, then by dag_id."""
        counts: Counter[str] = Counter()
        for line in self.lines:
            counts[line.dag_id] += line.count
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def near_full(self) -> bool:
        """Whether the total reached ``NEAR_FULL`` of ``MAX_DEFERRED`` (back-pressure near)."""
        return self.total >= NEAR_FULL * self.max_deferred

    def full(self) -> bool:
        """Whether the total reached ``MAX_DEFERRED``: the worker has stopped fetching."""
        return self.total >= self.max_deferred
