"""Transport: HTTP calls to Airflow's REST API with retries, auth and version detection.

One pooled ``requests.Session`` per client, configured by an ``AirflowConnection``.
``Transport.request`` runs the retry loop (STYLE §7): transient failures (connection refused
or reset, timeouts, 429, 5xx, as ``failures.py`` classifies them) back off per the
``RetryPolicy`` and honour ``Retry-After``; a JWT is dropped and the call resent once on a
401 or a 403 "Invalid JWT token"; TLS failures raise ``ConfigError`` at once. Each
request sent calls the hook of its purpose (``calls.py``): the transport's own, or
``detect``/``login`` for version detection and JWT logins.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import structlog
from requests.adapters import HTTPAdapter

from consumer.airflow.auth import ApiAuth, BasicAuth, JwtAuth
from consumer.airflow.auth_mode import prepare_session
from consumer.airflow.calls import CallPurpose, CountCalls, count_nothing
from consumer.airflow.connection import AirflowConnection
from consumer.airflow.detect import detect_api_version
from consumer.airflow.failures import CALL_ERRORS, UNREACHABLE, classify_failure, is_transient
from consumer.airflow.retry import RetryState, parse_retry_after
from consumer.airflow.runs import ApiVersion
from consumer.errors import AirflowUnavailableError, ConfigError, ErrorCode

INVALID_JWT = "Invalid JWT token"
NO_PROXIES: dict[str, str] = {}  # trust_env is off: no proxy applies (spares a URL parse)

RUN_ID_SAFE = ":+~"  # run id characters a path keeps as they are (Airflow reads them so)
log = structlog.get_logger(__name__)


class _TransientError(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, outcome: str, retry_after: float | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.retry_after = retry_after


class Transport:
    """Sends requests to ``<base_url>/api/<version>``; thread-safe, one pooled session."""

    def __init__(
        self,
        connection: AirflowConnection,
        *,
        stop: threading.Event | None = None,
        purpose: CallPurpose = CallPurpose.TRIGGER,
        count_calls: CountCalls = count_nothing,
    ) -> None:
        """Configure the transport; nothing is sent until the first call.

        Args:
            connection: where Airflow is, the credentials, timeouts, retry policy and pool.
            stop: when set, a call waiting to retry gives up at once (shutdown).
            purpose: what the calls sent through this transport are for.
            count_calls: binds the hook that counts the requests of a purpose; each
                request calls its hook just before it is sent (``calls.py``).

        Raises:
            ConfigError: inconsistent credentials, a URL with credentials, a missing CA bundle.
        """
        parts = urlsplit(connection.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError("the Airflow URL must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("the Airflow URL must not carry credentials; set username/password")
        tokens = connection.token is not None or connection.token_file is not None
        if tokens and (connection.username is not None or connection.password is not None):
            raise ConfigError("give either an Airflow token or a username/password, not both")
        if (connection.username is None) != (connection.password is None):
            raise ConfigError("an Airflow username needs a password, and a password a username")
        ca_bundle = connection.ca_bundle
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise ConfigError(f"the Airflow CA bundle {ca_bundle} is not a readable file")
        self.base_url = connection.base_url.rstrip("/")
        url_root = requests.PreparedRequest()
        url_root.prepare_url(self.base_url, None)  # IDNA host, quoted path: once, not per call
        self._url_root = (url_root.url or self.base_url).rstrip("/")
        api_version = connection.api_version
        self._forced: ApiVersion | None = None if api_version == "auto" else api_version
        self._username = connection.username
        self._password = connection.password
        self._timeout = (connection.connect_timeout, connection.read_timeout)
        self.retry = connection.retry
        self._jwt_refresh_margin = connection.jwt_refresh_margin
        self._stop = stop
        self._on_call = count_calls(purpose)
        self._on_detect = count_calls(CallPurpose.DETECT)
        self._on_login = count_calls(CallPurpose.LOGIN)
        self._session = requests.Session()
        # no proxies, CA bundle or .netrc credentials from the environment (REQUESTS_CA_BUNDLE
        # would silently replace the configured trust): only this client's settings apply
        self._session.trust_env = False
        self._session.verify = str(ca_bundle) if ca_bundle is not None else True
        # answers are small JSON: gzip costs Airflow CPU to compress and ours to inflate
        self._headers = requests.utils.default_headers()
        self._headers.update({"Accept": "application/json", "Accept-Encoding": "identity"})
        self._session.headers.update(self._headers)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=connection.pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()
        self._api: ApiVersion | None = None
        self._auth: ApiAuth | None = None
        # AIRFLOW_AUTH (auth_mode.py): a token, token file or Google auth whatever the API
        # version, or MWAA's adapter mounted on the session
        self._fixed_auth = prepare_session(
            connection, self._session, self._url_root, on_login=self._on_login
        )

    def __repr__(self) -> str:
        """Name the server and API, never a credential."""
        return f"Transport(base_url={self.base_url!r}, api_version={self._api or 'auto'!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    @property
    def api_version(self) -> ApiVersion:
        """The REST API in use, detected on first access when ``auto``.

        Raises:
            ConfigError: the server is not an Airflow the client can identify, or TLS failed.
            AirflowUnavailableError: detection could not reach Airflow.
        """
        return self._ensure_ready()[0]

    def _ensure_ready(self) -> tuple[ApiVersion, ApiAuth | None]:
        api = self._api
        if api is not None:
            return api, self._auth
        with self._lock:
            if self._api is None:
                detected = self._forced or self._detect()
                self._auth = self._make_auth(detected)
                self._api = detected
            return self._api, self._auth

    def _detect(self) -> ApiVersion:
        found = detect_api_version(
            self._session,
            self.base_url,
            timeout=self._timeout,
            username=self._username,
            password=self._password,
            auth=self._fixed_auth,
            on_call=self._on_detect,
        )
        log.info("airflow_api_detected", url=self.base_url, api_version=found.api_version)
        return found.api_version

    def _make_auth(self, api: ApiVersion) -> ApiAuth | None:
        if self._fixed_auth is not None:
            return self._fixed_auth
        if self._username is None or self._password is None:
            return None
        if api == "v1":
            return BasicAuth(self._username, self._password)
        return JwtAuth(
            f"{self.base_url}/auth/token",
            self._username,
            self._password,
            session=self._session,
            timeout=self._timeout,
            refresh_margin=self._jwt_refresh_margin,
            on_call=self._on_login,
        )

    def request(
        self, state: RetryState, method: str, path: str, *, body: dict[str, Any] | None = None
    ) -> tuple[requests.Response, RetryState]:
        """Send until Airflow gives a non-transient answer, retrying per the policy.

        Args:
            state: the call's retry state so far.
            method: the HTTP method.
            path: the path below ``/api/<version>``.
            body: a JSON body.

        Returns:
            The answer (any non-transient status) and the new state.

        Raises:
            AirflowUnavailableError: ``airflow_unavailable`` when the budget is spent.
            ConfigError: TLS failure, refused JWT login, or an unidentifiable server.
        """
        refreshed = False
        while True:
            try:
                response = self._send_once(method, path, body)
            except _TransientError as failure:
                state = state.next(failure.outcome, retry_after=failure.retry_after, method=method)
            else:
                outcome = str(response.status_code)
                if not refreshed and self._token_refused(response):
                    refreshed = True
                    state = state.record(outcome, method)
                    continue
                if not is_transient(response.status_code):
                    return response, state.record(outcome, method)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                state = state.next(outcome, retry_after=retry_after, method=method)
            state = self.backoff(state, method, path)

    def _send_once(self, method: str, path: str, body: dict[str, Any] | None) -> requests.Response:
        try:
            api, auth = self._ensure_ready()
            prepared = self._prepare(method, f"{self._url_root}/api/{api}{path}", body, auth)
            self._on_call()
            return self._session.send(prepared, timeout=self._timeout, proxies=NO_PROXIES)
        except AirflowUnavailableError as exc:
            status = exc.details.get("status")
            raise _TransientError("ConnectFailed" if status is None else str(status)) from None
        except CALL_ERRORS as exc:
            failure = classify_failure(exc, self.base_url)
            if failure.fatal:
                raise failure.error from None
            raise _TransientError(failure.outcome) from None

    def _prepare(
        self, method: str, url: str, body: dict[str, Any] | None, auth: ApiAuth | None
    ) -> requests.PreparedRequest:
        """The request ``Session.request`` would prepare, built directly.

        ``url`` is already quoted and the session has no cookies, params or hooks to merge:
        requests' general preparation cost more CPU than the rest of a trigger call.
        """
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = url
        prepared.headers = self._headers.copy()
        if body is not None:
            prepared.body = json.dumps(body, allow_nan=False).encode("utf-8")
            prepared.headers["Content-Type"] = "application/json"
        prepared.prepare_content_length(prepared.body)
        return prepared if auth is None else auth(prepared)

    def _token_refused(self, response: requests.Response) -> bool:
        """Drop a refused JWT (401, or 403 "Invalid JWT token") so one resend gets a fresh one."""
        auth = self._auth
        if auth is None or not auth.refreshable:
            return False
        status = response.status_code
        if status == requests.codes.forbidden:
            body = read_json(response)
            if not (isinstance(body, dict) and body.get("detail") == INVALID_JWT):
                return False
        elif status != requests.codes.unauthorized:
            return False
        auth.invalidate(response.request.headers.get("Authorization"))
        log.info("airflow_token_refused", url=self.base_url, status=status)
        return True

    def backoff(self, state: RetryState, method: str, path: str) -> RetryState:
        """Wait the state's delay before the next try.

        Args:
            state: the state whose last attempt was a transient failure.
            method: the HTTP method, for the log and the error.
            path: the path, for the log and the error.

        Returns:
            The same state.

        Raises:
            AirflowUnavailableError: ``airflow_unavailable`` when the budget is spent or
                ``stop`` was set while waiting.
        """
        last = state.history[-1].outcome
        if state.exhausted:
            raise AirflowUnavailableError(
                ErrorCode.AIRFLOW_UNAVAILABLE,
                f"Airflow {method} {path} failed {state.failures} times; last: {last}",
                {
                    "attempts": state.attempts,
                    "history": [a.outcome for a in state.history],
                    "reachable": last not in UNREACHABLE,
                },
                may_have_reached=state.may_have_reached,
            )
        log.warning(
            "airflow_call_retrying",
            method=method,
            path=path,
            outcome=last,
            attempt=state.attempts,
            delay=round(state.delay, 3),
        )
        if self._stop is None:
            time.sleep(state.delay)
        elif self._stop.wait(state.delay):
            raise AirflowUnavailableError(
                ErrorCode.AIRFLOW_UNAVAILABLE,
                f"stopped while waiting to retry Airflow {method} {path}",
                {"attempts": state.attempts, "stopped": True, "reachable": True},
            )
        return state

    def get_once(self, path: str) -> requests.Response | None:
        """One authenticated GET with no retries, for best-effort look-ups.

        Args:
            path: the path below ``/api/<version>``.

        Returns:
            The answer, or None when no answer came.
        """
        try:
            api, auth = self._ensure_ready()
            self._on_call()
            return self._session.get(
                f"{self.base_url}/api/{api}{path}", auth=auth, timeout=self._timeout
            )
        except (requests.RequestException, AirflowUnavailableError, ConfigError):
            return None


def read_json(response: requests.Response) -> Any:
    """The JSON body, or ``{}`` when there is none (an HTML error page, say)."""
    try:
        return response.json()
    except ValueError:
        return {}


def run_path(dag_id: str, run_id: str) -> str:
    """The API path of one run (``/dags/{dag_id}/dagRuns/{run_id}``), quoted as Airflow reads it.

    Args:
        dag_id: the DAG.
        run_id: the run.

    Returns:
        The path, relative to the API base.
    """
    return f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe=RUN_ID_SAFE)}"
