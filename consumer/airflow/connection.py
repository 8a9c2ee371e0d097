"""AirflowConnection: the one frozen description of how to reach Airflow, built from Settings.

``AirflowClient`` and ``Transport`` take it instead of a dozen keyword arguments, and
``from_settings`` is the only mapping from ``Settings`` to it::

    connection = AirflowConnection.from_settings(settings)
    single = dataclasses.replace(connection, retry=SINGLE_ATTEMPT, pool_size=1)

Every value that is a setting comes from ``Settings``; only the tuning knobs that are no
setting (``jwt_refresh_margin``, ``dag_info_ttl``) and the managed-service ones (``token_file``,
``auth``, ``mwaa_environment``: off by default, as before they existed) have defaults. Its ``repr``
shows the password and token as ``SecretStr`` does: masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from consumer.airflow.auth import DEFAULT_REFRESH_MARGIN
from consumer.airflow.retry import RetryPolicy
from consumer.settings import Settings

DEFAULT_DAG_INFO_TTL = 10.0


@dataclass(frozen=True, kw_only=True)
class AirflowConnection:
    """Where Airflow is, who the client is, and how patient it is.

    Attributes:
        base_url: Airflow's base URL (``https://airflow.example.com``), no credentials in it.
        api_version: ``auto`` detects on first use; ``v1``/``v2`` force it.
        username: Airflow user: basic auth on v1, JWT login on v2.
        password: its password.
        token: a static bearer token instead of username/password.
        token_file: the file the token came from, re-read whenever it changes (rotation).
        auth: ``auto`` (the credentials above, or none), ``mwaa`` (every call through
            MWAA's ``InvokeRestApi``, ``mwaa.py``) or ``google`` (Google OAuth tokens,
            ``google_auth.py``).
        mwaa_environment: the MWAA environment's name (``auth`` ``mwaa``).
        ca_bundle: a PEM CA bundle for HTTPS; the system's trust store when None.
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds to wait for an answer.
        retry: the retry policy and budget of one call.
        pool_size: pooled connections, sized for the worker's concurrency.
        jwt_refresh_margin: refresh a JWT this many seconds before it expires; None
            refreshes only when Airflow refuses it.
        dag_info_ttl: seconds a DAG's paused flag is cached (0 asks every time).
    """

    base_url: str
    api_version: Literal["auto", "v1", "v2"]
    username: str | None
    password: SecretStr | None
    token: SecretStr | None
    ca_bundle: Path | None
    connect_timeout: float
    read_timeout: float
    retry: RetryPolicy
    pool_size: int
    token_file: Path | None = None
    auth: Literal["auto", "mwaa", "google"] = "auto"
    mwaa_environment: str | None = None
    jwt_refresh_margin: float | None = DEFAULT_REFRESH_MARGIN
    dag_info_ttl: float = DEFAULT_DAG_INFO_TTL

    @classmethod
    def from_settings(cls, settings: Settings) -> AirflowConnection:
        """The connection the worker's settings describe (spec §6).

        Args:
            settings: the worker's settings.

        Returns:
            The connection; the pool holds one connection per concurrent Airflow call and
            tracking check, and one call retries for at most ``airflow_retry_budget``.
        """
        return cls(
            base_url=settings.airflow_url,
            api_version=settings.airflow_api_version,
            username=settings.airflow_username,
            password=settings.airflow_password,
            token=settings.airflow_token,
            token_file=settings.airflow_token_file,
            auth=settings.airflow_auth,
            mwaa_environment=settings.mwaa_environment,
            ca_bundle=settings.airflow_ca_bundle,
            connect_timeout=settings.airflow_connect_timeout.total_seconds(),
            read_timeout=settings.airflow_read_timeout.total_seconds(),
            retry=RetryPolicy(max_elapsed=settings.airflow_retry_budget.total_seconds()),
            pool_size=settings.airflow_max_concurrency + settings.track_concurrency,
        )
