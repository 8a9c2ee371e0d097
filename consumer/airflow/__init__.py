"""Airflow's REST API as the worker sees it: the ``AirflowApi`` seam and its factory.

The pipeline depends on the Protocol; ``make_airflow_client`` builds the real client::

    api = make_airflow_client("http://airflow:8080", username="admin", password=SecretStr("..."))
    result = api.trigger("my_dag", run_id, conf={"n": 1})   # TriggerResult, or raises

Errors: ``AirflowError`` with ``dag_not_found``, ``airflow_rejected`` or
``logical_date_conflict``; ``AirflowUnavailableError`` (``airflow_unavailable``) when the retry
budget runs out (``details.reachable`` False means no connection could be made at all);
``ConfigError`` when credentials are refused after a token refresh or TLS fails (fatal).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import SecretStr

from consumer.airflow.client import AirflowClient
from consumer.airflow.retry import RetryPolicy
from consumer.airflow.runs import ApiVersion, DagRun, TriggerResult
from consumer.airflow.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_POOL_SIZE,
    DEFAULT_READ_TIMEOUT,
)

__all__ = [
    "AirflowApi",
    "AirflowClient",
    "ApiVersion",
    "DagRun",
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

    def run_url(self, dag_id: str, run_id: str) -> str:
        """Where the run opens in the Airflow UI."""
        ...

    def ping(self) -> str:
        """Airflow's version when it answers and accepts the credentials; raises otherwise."""
        ...

    def close(self) -> None:
        """Release pooled connections."""
        ...


def make_airflow_client(
    base_url: str,
    *,
    api_version: Literal["auto", "v1", "v2"] = "auto",
    username: str | None = None,
    password: SecretStr | None = None,
    token: SecretStr | None = None,
    ca_bundle: str | Path | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    retry: RetryPolicy | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
    stop: threading.Event | None = None,
) -> AirflowApi:
    """Build the Airflow client behind the ``AirflowApi`` seam.

    Args:
        base_url: Airflow's base URL.
        api_version: ``auto``, ``v1`` or ``v2``.
        username: Airflow user (basic auth on v1, JWT login on v2).
        password: its password.
        token: a static bearer token instead.
        ca_bundle: PEM CA bundle for HTTPS.
        connect_timeout: seconds to connect.
        read_timeout: seconds to wait for an answer.
        retry: the retry policy and budget.
        pool_size: pooled connections (the worker's max in-flight requests).
        stop: set it to make calls that wait to retry give up (shutdown).

    Returns:
        A ready client; nothing has been sent yet.

    Raises:
        ConfigError: inconsistent settings (see ``AirflowClient``).
    """
    return AirflowClient(
        base_url,
        api_version=api_version,
        username=username,
        password=password,
        token=token,
        ca_bundle=ca_bundle,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retry=retry,
        pool_size=pool_size,
        stop=stop,
    )
