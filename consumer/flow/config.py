"""Flow limits: how many queued runs and how many new runs a second each DAG may get (issue 30).

Configured in the TOML file; the first entry whose globs match a ``dag_id`` applies::

    [[dag_limits]]
    dags = ["etl_*", "reports_daily"]
    max_queued_runs = 20      # never more than this many queued runs of each matching DAG
    rate = "120/min"          # new runs per DAG (per second, minute or hour), all replicas

plus ``AIRFLOW_MAX_QUEUED_RUNS`` (every DAG together). A DAG under any limit is triggered
only by the store's one releaser (``flow/releaser.py``): its requests are deferred first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MAX_DEFERRED = 100_000

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNIT_SECONDS |= {"h": 3600, "hour": 3600}


@dataclass(frozen=True)
class Rate:
    """New runs per DAG: ``count`` per ``per_seconds``, spread evenly (one each ``interval``)."""

    count: int
    per_seconds: int

    @property
    def interval(self) -> timedelta:
        """The time between two runs of the DAG: never more than ``count`` in any period."""
        return timedelta(seconds=self.per_seconds / self.count)

    def __str__(self) -> str:
        """As configured: ``120/min``."""
        unit = {1: "s", 60: "min", 3600: "h"}[self.per_seconds]
        return f"{self.count}/{unit}"


def parse_rate(text: str) -> Rate:
    """Read ``"120/min"`` (units: s, sec, second, m, min, minute, h, hour).

    Raises:
        ValueError: not a positive count per one of those units.
    """
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"rate {text!r} is not like '120/min' (a positive count per s, min or h)")
    return Rate(int(match.group(1)), _UNIT_SECONDS[match.group(2)])


class DagLimit(BaseModel):
    """One ``[[dag_limits]]`` entry: the DAGs it names and their limits (at least one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dags: Annotated[tuple[str, ...], Field(min_length=1)]
    max_queued_runs: Annotated[int | None, Field(ge=1)] = None
    rate: Rate | None = None

    @field_validator("rate", mode="before")
    @classmethod
    def _read_rate(cls, value: Any) -> Any:
        return parse_rate(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _limits_something(self) -> DagLimit:
        if self.max_queued_runs is None and self.rate is None:
            raise ValueError(
                f"dag_limits entry for {list(self.dags)} sets neither max_queued_runs nor rate"
            )
        return self

    def matches(self, dag_id: str) -> bool:
        """Whether one of the entry's globs matches ``dag_id`` (case-sensitive)."""
        return any(fnmatchcase(dag_id, pattern) for pattern in self.dags)


@dataclass(frozen=True)
class FlowLimits:
    """What limits DAGs: the per-DAG limits and the all-DAG queued bound."""

    dag_limits: tuple[DagLimit, ...] = ()
    airflow_max_queued_runs: int | None = None

    @classmethod
    def build(
        cls,
        entries: Sequence[DagLimit | dict[str, Any]],
        airflow_max_queued_runs: int | None = None,
    ) -> FlowLimits:
        """The limits from the config file's entries (dicts are validated here)."""
        limits = tuple(DagLimit.model_validate(entry) for entry in entries)
        return cls(limits, airflow_max_queued_runs)

    def limit_for(self, dag_id: str) -> DagLimit | None:
        """The first entry whose globs match ``dag_id``, or None."""
        return next((entry for entry in self.dag_limits if entry.matches(dag_id)), None)

    def limited(self, dag_id: str) -> bool:
        """Whether ``dag_id``'s runs are made by the releaser alone (any limit applies)."""
        return self.airflow_max_queued_runs is not None or self.limit_for(dag_id) is not None
