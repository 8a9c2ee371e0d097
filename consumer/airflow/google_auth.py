"""GoogleAuth: Google OAuth 2.0 access tokens for Cloud Composer (``AIRFLOW_AUTH=google``).

The credentials are google-auth's application default ones (workload identity, a service
account key in ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials) with the
``cloud-platform`` scope. The token is refreshed before it expires, a fifth of its life or
a minute ahead, whichever is sooner (google-auth's own ``valid`` asks 3m45s ahead, longer
than a short-lived token lives), and dropped on demand after a 401, like ``JwtAuth``; one
lock makes one refresh serve every waiting thread. Composer 2 serves ``/api/v1`` and
Composer 3 with Airflow 3 ``/api/v2``: detection tells them apart with the token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import google.auth
import google.auth.exceptions
import requests
from google.auth.credentials import Credentials
from google.auth.transport import Request as GoogleRequest
from google.auth.transport.requests import Request as RequestsRequest

from consumer.airflow.auth import DEFAULT_REFRESH_MARGIN, ApiAuth
from consumer.airflow.calls import OnCall, uncounted
from consumer.errors import AirflowUnavailableError, ConfigError, ErrorCode

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_MARGIN_SHARE = 0.2


def default_credentials() -> Credentials:
    """Google's application default credentials, scoped to ``cloud-platform``.

    Returns:
        The credentials (no token fetched yet).

    Raises:
        ConfigError: none are configured, or the key file is unreadable.
    """
    try:
        credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM])
    except google.auth.exceptions.GoogleAuthError as exc:
        raise ConfigError(
            f"no Google credentials for Cloud Composer: {exc}; set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service account key, run with a service "
            "account (workload identity), or `gcloud auth application-default login`"
        ) from None
    return credentials


class _TimedRequest(GoogleRequest):
    """google-auth's requests transport with the client's timeout on token calls."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        self._inner = RequestsRequest(session=requests.Session())
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        return self._inner(url, method, body, headers, timeout=timeout or self._timeout, **kwargs)


class GoogleAuth(ApiAuth):
    """``Authorization: Bearer <Google access token>``, refreshed before expiry and on 401."""

    refreshable: ClassVar[bool] = True

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: tuple[float, float],
        refresh_margin: float | None = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        on_call: OnCall = uncounted,
    ) -> None:
        """Keep the credentials; no token is fetched yet.

        Args:
            credentials: google-auth credentials (``default_credentials``).
            timeout: (connect, read) seconds for a token call.
            refresh_margin: refresh this many seconds before expiry (at most a fifth of
                the token's life); None refreshes only when Airflow refuses the token.
            clock: monotonic clock, for tests.
            on_call: called before each token call (the ``login`` call counter).
        """
        self._credentials = credentials
        self._request = _TimedRequest(timeout)
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._on_call = on_call
        self._lock = threading.Lock()
        self._refresh_at: float | None = None
        self._stale = True
        self.tokens_fetched = 0

    @property
    def account(self) -> str:
        """Who the tokens are for: the service account's email, or the credential type."""
        email = getattr(self._credentials, "service_account_email", None)
        return email if isinstance(email, str) else type(self._credentials).__name__

    def __repr__(self) -> str:
        """Name the account, never a token or key."""
        return f"GoogleAuth(account={self.account!r})"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add ``Authorization: Bearer <token>``, refreshing it first when due.

        Args:
            r: the outgoing request.

        Returns:
            The same request.
        """
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r

    def token(self) -> str:
        """The current access token, refreshed (once, for all waiting threads) when due.

        Raises:
            ConfigError: Google refused the credentials.
            AirflowUnavailableError: the token endpoint could not be reached, or failed in
                a way worth retrying.
        """
        with self._lock:
            token = self._credentials.token
            due = self._refresh_at is not None and self._clock() >= self._refresh_at
            if self._stale or due or not isinstance(token, str):
                token = self._refresh()
            return token

    def _refresh(self) -> str:
        self._on_call()
        try:
            # google-auth leaves refresh unannotated
            self._credentials.refresh(self._request)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as exc:
            if exc.retryable:
                raise _unavailable(exc, reachable=True) from None
            raise ConfigError(
                f"Google refused the credentials of {self.account} ({_reason(exc)}); "
                "check the service account, its key, and its access to the environment"
            ) from None
        except google.auth.exceptions.TransportError as exc:
            raise _unavailable(exc, reachable=False) from None
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise ConfigError(f"Google gave {self.account} no access token")
        self.tokens_fetched += 1
        self._stale = False
        self._refresh_at = self._due()
        return token

    def _due(self) -> float | None:
        expiry: datetime | None = self._credentials.expiry  # naive UTC, per google-auth
        if self._refresh_margin is None or expiry is None:
            return None
        life = (expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
        life = max(life, 0.0)
        return self._clock() + life - min(self._refresh_margin, life * _MARGIN_SHARE)

    def invalidate(self, used_header: str | None) -> None:
        """Refresh before the next request if Airflow refused the current token.

        Args:
            used_header: the ``Authorization`` header of the refused request.
        """
        with self._lock:
            if used_header == f"Bearer {self._credentials.token}":
                self._stale = True


def _reason(exc: google.auth.exceptions.GoogleAuthError) -> str:
    """The error's first line (``invalid_grant: …``); never the assertion or a token."""
    first = exc.args[0] if exc.args else type(exc).__name__
    return str(first).splitlines()[0][:200]


def _unavailable(exc: google.auth.exceptions.GoogleAuthError, *, reachable: bool) -> Exception:
    return AirflowUnavailableError(
        ErrorCode.AIRFLOW_UNAVAILABLE,
        f"Google's token endpoint failed: {_reason(exc)}",
        {"reachable": reachable},
    )
