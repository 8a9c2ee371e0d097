"""What the client returns about a DAG run: ``DagRun`` and, for a trigger, ``TriggerResult``."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from consumer.provenance import Source

ApiVersion: TypeAlias = Literal["v1", "v2"]


@dataclass(frozen=True)
class DagRun:
    """A DAG run as Airflow reports it.

    Attributes:
        dag_id: the DAG.
        dag_run_id: the run's id.
        state: Airflow's run state (``queued``, ``running``, ``success``, ``failed``...).
        logical_date: the run's logical date in UTC, or None (Airflow 3 runs without one).
        run_url: where the run opens in the Airflow UI of that version.
        source: the request that made it, as its conf names it (``consumer.provenance``);
            None when unknown.
    """

    dag_id: str
    dag_run_id: str
    state: str
    logical_date: datetime | None
    run_url: str
    _: KW_ONLY
    source: Source | None = None


@dataclass(frozen=True)
class TriggerResult(DagRun):
    """The outcome of ``trigger``: the run, and what this call did to it.

    Attributes:
        created: True when a POST of this call was answered with the new run.
        dag_paused: whether the DAG was paused (its run stays queued); None when unknown.
        attempts: HTTP calls this trigger made to the runs endpoints (POSTs and the GET that
            resolves a 409); token, detection and DAG look-ups are not counted.
        may_have_reached: a POST of this call got no answer (a read timeout, 502, 504)
            before the run was found: that POST may have made it (spec §3). Whether the
            request made the run is decided from this (``pipeline.dedup.made_the_run``).
    """

    created: bool
    dag_paused: bool | None
    attempts: int
    may_have_reached: bool = False


@dataclass(frozen=True)
class EndedRuns:
    """A listing of ended DAG runs (``AirflowClient.ended_runs``).

    Attributes:
        runs: the runs that ended in the window asked for.
        latest_end: the latest ``end_date`` among them, on Airflow's own clock; None when
            none was listed (or none gave a readable end).
    """

    runs: list[DagRun]
    latest_end: datetime | None


def parse_timestamp(value: Any) -> datetime | None:
    """An Airflow timestamp (``...Z`` on Airflow 3, ``...+00:00`` on Airflow 2) in UTC.

    Args:
        value: the JSON value.

    Returns:
        An aware datetime in UTC, or None for null or an unreadable value.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
