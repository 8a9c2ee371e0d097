"""Airflow's REST API as the worker sees it: the ``AirflowApi`` seam and its factory.

The pipeline depends on the Protocol; ``make_airflow_client`` builds the real client from
the settings::

    api = make_airflow_client(settings, stop=stop)
    result = api.trigger("my_dag", run_id, conf={"n": 1})   # TriggerResult, or raises

The package's parts:

- ``connection``: ``AirflowConnection``, the frozen connection config, ``from_settings``.
- ``client``: ``AirflowClient`` (trigger, get_run, run_url, ping) over a ``transport``.
- ``transport``: ``Transport``, one pooled session running the retry loop of ``retry``.
- ``calls``: ``CallPurpose`` and the hook that counts each HTTP request by purpose.
- ``auth``, ``detect``: credentials and API-version detection.
- ``failures``: requests' exceptions and transient statuses, classified once.
- ``limit``: ``AdaptiveLimit``/``FixedLimit``, the limit on concurrent Airflow calls.
- ``gate``: ``AirflowGate``, whether Airflow as a whole answers (the outage wait).

Errors: ``AirflowError`` with ``dag_not_found``, ``airflow_rejected`` or
``logical_date_conflict``; ``AirflowUnavailableError`` (``airflow_unavailable``) when the retry
budget runs out (``details.reachable`` False means no connection could be made at all);
``ConfigError`` when credentials are refused after a token refresh or TLS fails (fatal).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Protocol

from consumer.airflow.calls import CallPurpose, CountCalls, count_nothing
from consumer.airflow.client import AirflowClient
from consumer.airflow.connection import AirflowConnection
from consumer.airflow.retry import RetryPolicy
from consumer.airflow.runs import ApiVersion, DagRun, EndedRuns, TriggerResult
from consumer.settings import Settings

__all__ = [
    "AirflowApi",
    "AirflowClient",
    "AirflowConnection",
    "ApiVersion",
    "CallPurpose",
    "DagRun",
    "EndedRuns",
    "RetryPolicy",
    "TriggerResult",
    "make_airflow_client",
]


class AirflowApi(Protocol):
    """What the worker needs from Airflow (spec §3, §4)."""

    def trigger(
        self,
        dag_id: str,
        run_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | None = None,
        note: str | None = None,
    ) -> TriggerResult:
        """Create the run named ``run_id``, or report the one that already exists."""
        ...

    def get_run(self, dag_id: str, run_id: str) -> DagRun | None:
        """The run's current state, or None when Airflow does not know it."""
        ...

    def ended_runs(self, dag_ids: Collection[str], since: datetime) -> EndedRuns | None:
        """Runs of ``dag_ids`` that ended at or after ``since``; None if Airflow cannot list."""
        ...

    def run_url(self, dag_id: str, run_id: str) -> str:
        """Where the run opens in the Airflow UI."""
        ...

    def probe_trigger(self) -> bool:
        """Whether the trigger endpoint gives definite answers (one call, never raises)."""
        ...

    def ping(self) -> str:
        """Airflow's version when it answers and accepts the credentials; raises otherwise."""
        ...

    def close(self) -> None:
        """Release pooled connections."""
        ...


def make_airflow_client(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    purpose: CallPurpose = CallPurpose.TRIGGER,
    count_calls: CountCalls = count_nothing,
) -> AirflowClient:
    """Build the Airflow client (``AirflowApi``, and what ``clearing`` needs) from the settings.

    Args:
        settings: the worker's settings (``AirflowConnection.from_settings`` reads them).
        stop: set it to make calls that wait to retry give up (shutdown).
        purpose: what the client's calls are for: the ``purpose`` label they are counted
            under (``trigger``, ``tracking``).
        count_calls: binds the hook counting each HTTP request of a purpose
            (``Metrics.bind_airflow_calls``); by default nothing is counted.

    Returns:
        A ready client; nothing has been sent yet.

    Raises:
        ConfigError: inconsistent settings (see ``AirflowClient``).
    """
    return AirflowClient(
        AirflowConnection.from_settings(settings),
        stop=stop,
        purpose=purpose,
        count_calls=count_calls,
    )
