"""Doctor's Airflow checks: reachable with its version, credentials, allow-list, paused DAGs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import requests

from consumer.airflow import AirflowClient, AirflowConnection
from consumer.airflow.retry import SINGLE_ATTEMPT
from consumer.airflow.transport import read_json
from consumer.diagnostics.allowlist import DagInfo, check_allowlist, check_paused
from consumer.diagnostics.result import CheckResult, not_checked
from consumer.errors import AirflowError, ConfigError, ErrorCode
from consumer.settings import Settings, env_name

DAG_PAGE_SIZE = 100  # Airflow's default maximum_page_limit
MAX_DAG_PAGES = 100
_HTTP_UNAUTHORIZED = 401
_HTTP_FORBIDDEN = 403
AIRFLOW_DEPENDENTS = ("airflow credentials", "DAG allow-list", "paused DAGs")


def airflow_checks(settings: Settings, timeout: float) -> list[CheckResult]:
    """Airflow reachable, credentials valid, each allow-list pattern matched, paused DAGs.

    Args:
        settings: the settings to check.
        timeout: seconds each HTTP call may take.

    Returns:
        The Airflow results; later ones are "not checked" when an earlier one fails.
    """
    try:
        configured = AirflowConnection.from_settings(settings)
        connection = replace(
            configured,
            connect_timeout=min(timeout, configured.connect_timeout),
            read_timeout=timeout,
            retry=SINGLE_ATTEMPT,
            pool_size=1,
        )
        client = AirflowClient(connection)
    except ConfigError as exc:
        failed = CheckResult("airflow", False, str(exc), _airflow_remedy(str(exc), settings))
        return [failed, *not_checked(AIRFLOW_DEPENDENTS, "airflow")]
    with client:
        reached = check_airflow(client, settings)
        if not reached.ok:
            return [reached, *not_checked(AIRFLOW_DEPENDENTS, "airflow")]
        credentials, dags = check_credentials(client, settings)
        if dags is None:
            return [reached, credentials, *not_checked(AIRFLOW_DEPENDENTS[1:], "credentials")]
    return [
        reached,
        credentials,
        *check_allowlist(settings.dag_allowlist, dags),
        check_paused(settings.dag_allowlist, dags),
    ]


def check_airflow(client: AirflowClient, settings: Settings | None = None) -> CheckResult:
    """Airflow answers at the configured URL; its version, REST API and auth go in the detail.

    Args:
        client: a single-attempt client.
        settings: the settings it was built from (for the remedies of its auth mode).

    Returns:
        The result; unreachable, TLS failures and non-Airflow servers fail.
    """
    try:
        api = client.api_version
    except AirflowError as exc:
        return CheckResult(
            "airflow",
            False,
            f"cannot reach Airflow at {client.base_url}: {exc}",
            f"check {env_name('airflow_url')} and that the Airflow API server is running",
        )
    except ConfigError as exc:
        return CheckResult("airflow", False, str(exc), _airflow_remedy(str(exc), settings))
    try:
        version = f"Airflow {client.ping()}"
    except (AirflowError, ConfigError):
        # the version endpoint may need credentials; the credentials check says why
        version = "Airflow (version not readable without valid credentials)"
    managed = settings is not None and settings.airflow_auth != "auto"
    mode = f", auth {settings.airflow_auth}" if managed and settings is not None else ""
    return CheckResult("airflow", True, f"{version} at {client.base_url} (REST API {api}{mode})")


def _airflow_remedy(message: str, settings: Settings | None = None) -> str:
    if "is not supported" in message:  # support.check_release: too old an Airflow
        return "upgrade Airflow (README: Versions)"
    if "TLS" in message or "CA bundle" in message:
        return f"set {env_name('airflow_ca_bundle')} to the CA that signed Airflow's certificate"
    managed = settings is not None and settings.airflow_auth != "auto"
    if managed or "username" in message or "token" in message:
        return _credentials_remedy(settings)
    return f"check {env_name('airflow_url')}, or set {env_name('airflow_api_version')} to v1 or v2"


def _credentials_remedy(settings: Settings | None = None) -> str:
    auth = "auto" if settings is None else settings.airflow_auth
    if auth == "mwaa":
        return (
            f"check the AWS credentials and region (boto3's chain: role, profile, "
            f"AWS_* variables), {env_name('mwaa_environment')}, and that the identity may "
            "airflow:InvokeRestApi on the environment's Airflow role"
        )
    if auth == "google":
        return (
            "check Google's default credentials (GOOGLE_APPLICATION_CREDENTIALS, the "
            "workload's service account, or gcloud auth application-default login) and the "
            "account's access to the Composer environment"
        )
    return (
        f"check {env_name('airflow_username')} and {env_name('airflow_password')}[_FILE], "
        f"or {env_name('airflow_token')}[_FILE]"
    )


def check_credentials(
    client: AirflowClient, settings: Settings
) -> tuple[CheckResult, list[DagInfo] | None]:
    """An authenticated call succeeds: listing the DAGs the allow-list is checked against.

    Args:
        client: a single-attempt client that reached Airflow.
        settings: the settings to check (for the user name in the detail).

    Returns:
        The result, and the DAGs Airflow lists (None when the call failed).
    """
    who = _who(settings)
    try:
        dags = list_dags(client)
    except ConfigError as exc:
        remedy = _credentials_remedy(settings)
        return CheckResult("airflow credentials", False, str(exc), remedy), None
    except AirflowError as exc:
        detail = f"listing DAGs as {who} failed: {exc}"
        remedy = f"check {env_name('airflow_url')} and the Airflow API server's logs"
        return CheckResult("airflow credentials", False, detail, remedy), None
    return CheckResult("airflow credentials", True, f"{who} may list DAGs ({len(dags)})"), dags


def _who(settings: Settings) -> str:
    if settings.airflow_auth == "mwaa":
        return f"MWAA environment {settings.mwaa_environment} (AWS credentials)"
    if settings.airflow_auth == "google":
        return "Google's default credentials"
    if settings.airflow_token_file is not None:
        return f"the token in {settings.airflow_token_file}"
    if settings.airflow_token is not None:
        return "the static token"
    if settings.airflow_username is not None:
        return f"user {settings.airflow_username}"
    return "an anonymous client"


def list_dags(client: AirflowClient) -> list[DagInfo]:
    """Every DAG Airflow lists, page by page, with one attempt per page.

    Args:
        client: a client that reached Airflow.

    Returns:
        The DAGs.

    Raises:
        ConfigError: Airflow refused the credentials (401, 403, or a refused JWT login).
        AirflowError: Airflow could not be reached or answered another error.
    """
    dags: list[DagInfo] = []
    for page in range(MAX_DAG_PAGES):
        state = SINGLE_ATTEMPT.start()
        path = f"/dags?limit={DAG_PAGE_SIZE}&offset={page * DAG_PAGE_SIZE}"
        response, _ = client.transport.request(state, "GET", path)
        body = _dag_page(response, client.base_url)
        entries = body.get("dags") or []
        dags += [
            DagInfo(str(entry.get("dag_id")), bool(entry.get("is_paused")))
            for entry in entries
            if isinstance(entry, dict)
        ]
        if len(entries) < DAG_PAGE_SIZE or len(dags) >= int(body.get("total_entries") or 0):
            break
    return dags


def _dag_page(response: requests.Response, base_url: str) -> dict[str, Any]:
    status = response.status_code
    if status in {_HTTP_UNAUTHORIZED, _HTTP_FORBIDDEN}:
        raise ConfigError(
            f"Airflow at {base_url} refused to list DAGs ({status}): the credentials are "
            "wrong or the user lacks permission to read DAGs"
        )
    body = read_json(response)
    if not response.ok or not isinstance(body, dict):
        raise AirflowError(ErrorCode.AIRFLOW_REJECTED, f"GET /dags answered {status}")
    return body
