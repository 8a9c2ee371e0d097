"""API version detection: ``/api/v2`` (Airflow 3) or ``/api/v1`` (Airflow 2).

Both version endpoints answer without credentials on stock Airflow (facts §5): a 200 with
JSON from ``GET /api/v2/version`` means Airflow 3, otherwise one from ``GET /api/v1/version``
means Airflow 2. Behind a proxy that demands credentials, detection tries them: a token (or
any auth that does not depend on the version: a token file, Google's) on both endpoints, or
a username/password at ``POST /auth/token`` (Airflow 3 only) and then as basic auth on
``/api/v1/version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr

from consumer.airflow.auth import ApiAuth, BasicAuth, StaticToken
from consumer.airflow.calls import OnCall, uncounted
from consumer.airflow.failures import NO_ANSWER_ERRORS, classify_failure, is_transient
from consumer.airflow.runs import ApiVersion
from consumer.airflow.support import check_release
from consumer.errors import AirflowUnavailableError, ConfigError, ErrorCode

_HTTP_OK = 200
_HTTP_CREATED = 201


@dataclass(frozen=True)
class DetectedApi:
    """What detection found.

    Attributes:
        api_version: ``v2`` or ``v1``.
        airflow_version: the server's version string, when it said.
    """

    api_version: ApiVersion
    airflow_version: str | None


def detect_api_version(
    session: requests.Session,
    base_url: str,
    *,
    timeout: tuple[float, float],
    username: str | None = None,
    password: SecretStr | None = None,
    token: SecretStr | None = None,
    auth: ApiAuth | None = None,
    on_call: OnCall = uncounted,
) -> DetectedApi:
    """Ask the server which REST API it serves.

    Args:
        session: the client's session (its TLS settings apply).
        base_url: the Airflow base URL without a trailing slash.
        timeout: (connect, read) seconds per probe.
        username: user for the credentialed fallback.
        password: its password.
        token: a static bearer token for the credentialed fallback.
        auth: an auth for the credentialed fallback instead of ``token``.
        on_call: called before each probe is sent (the ``detect`` call counter).

    Returns:
        The detected API.

    Raises:
        ConfigError: TLS verification failed, no probe identified Airflow, or the release is
            older than the worker supports (``support.check_release``).
        AirflowUnavailableError: Airflow could not be reached or answered 429/5xx.
    """
    probes = _Probes(session, base_url, timeout, on_call)
    if token is not None and auth is None:
        auth = StaticToken(token)
    found = _identify(probes, username=username, password=password, auth=auth)
    if found is not None:
        check_release(found.api_version, found.airflow_version, base_url)
        return found
    if probes.transient is not None:
        raise AirflowUnavailableError(
            ErrorCode.AIRFLOW_UNAVAILABLE,
            f"Airflow at {base_url} answered {probes.transient} while detecting its API version",
            {"reachable": True, "status": probes.transient},
        )
    raise ConfigError(
        f"could not tell which Airflow REST API {base_url} serves "
        f"(answers: {', '.join(probes.seen)}); check the URL or set the API version to v1 or v2"
    )


def _identify(
    probes: _Probes,
    *,
    username: str | None,
    password: SecretStr | None,
    auth: ApiAuth | None,
) -> DetectedApi | None:
    """Probe without credentials, then with them; None when nothing identified Airflow."""
    apis: tuple[ApiVersion, ...] = ("v2", "v1")
    for api in apis:
        found = probes.version(api, None)
        if found is not None:
            return found
    if auth is not None:
        for api in apis:
            found = probes.version(api, auth)
            if found is not None:
                return found
    elif username is not None and password is not None:
        if probes.token_endpoint(username, password):
            return DetectedApi("v2", None)
        return probes.version("v1", BasicAuth(username, password))
    return None


class _Probes:
    """One detection run: sends the probes and remembers what they answered."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        timeout: tuple[float, float],
        on_call: OnCall,
    ):
        self.session = session
        self.base_url = base_url
        self.timeout = timeout
        self.on_call = on_call
        self.seen: list[str] = []
        self.transient: int | None = None

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        self.on_call()
        try:
            answer = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except NO_ANSWER_ERRORS as exc:
            raise classify_failure(exc, url).error from None
        status = answer.status_code
        self.seen.append(f"{method} {path} {status}")
        if is_transient(status):
            self.transient = status
        return answer

    def version(self, api: ApiVersion, auth: ApiAuth | None) -> DetectedApi | None:
        answer = self._send("GET", f"/api/{api}/version", auth=auth)
        if answer.status_code != _HTTP_OK:
            return None
        try:
            body: Any = answer.json()
        except ValueError:
            return None
        if not isinstance(body, dict) or "version" not in body:
            return None
        version = body["version"]
        return DetectedApi(api, version if isinstance(version, str) else None)

    def token_endpoint(self, username: str, password: SecretStr) -> bool:
        body = {"username": username, "password": password.get_secret_value()}
        answer = self._send("POST", "/auth/token", json=body)
        return answer.status_code in {_HTTP_OK, _HTTP_CREATED}
