"""How the client proves who it is to Airflow: basic auth, a static bearer token, or a JWT.

Each class is a ``requests`` ``AuthBase`` whose ``repr`` never shows the secret (spec §5).
``JwtAuth`` (Airflow 3) fetches a token from ``POST /auth/token``, refreshes it before it
expires, and drops it on demand after a 401 (or a 403 "Invalid JWT token"); one lock makes
one refresh serve every thread waiting for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import requests
from pydantic import SecretStr
from requests.auth import AuthBase

from consumer.airflow.calls import OnCall, uncounted
from consumer.airflow.failures import NO_ANSWER_ERRORS, classify_failure, is_transient
from consumer.errors import AirflowUnavailableError, ConfigError, ErrorCode

DEFAULT_REFRESH_MARGIN = 60.0
# a short-lived token is refreshed after this share of its life at the latest
_MARGIN_SHARE = 0.2


class ApiAuth(AuthBase):
    """Base of the client's auth methods; only ``JwtAuth`` can refresh."""

    refreshable: ClassVar[bool] = False

    def invalidate(self, used_header: str | None) -> None:
        """Forget the credential sent as ``used_header`` so the next call fetches a new one.

        Args:
            used_header: the ``Authorization`` header of the refused request.
        """


class BasicAuth(ApiAuth):
    """HTTP basic auth, for Airflow 2's ``basic_auth`` API backend."""

    def __init__(self, username: str, password: SecretStr) -> None:
        """Keep the credentials.

        Args:
            username: the Airflow user.
            password: its password; never shown.
        """
        self.username = username
        self._password = password

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the ``Authorization: Basic`` header.

        Args:
            r: the outgoing request.

        Returns:
            The same request.
        """
        pair = f"{self.username}:{self._password.get_secret_value()}".encode()
        r.headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        return r

    def __repr__(self) -> str:
        """Show the user, never the password."""
        return f"BasicAuth(username={self.username!r}, password={self._password!r})"


class StaticToken(ApiAuth):
    """A fixed bearer token (Astronomer and similar managed Airflow)."""

    def __init__(self, token: SecretStr) -> None:
        """Keep the token.

        Args:
            token: the bearer token; never shown.
        """
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the ``Authorization: Bearer`` header.

        Args:
            r: the outgoing request.

        Returns:
            The same request.
        """
        r.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return r

    def __repr__(self) -> str:
        """Never show the token."""
        return f"StaticToken(token={self._token!r})"


class JwtAuth(ApiAuth):
    """Airflow 3: a JWT from ``POST /auth/token``, cached, refreshed before expiry and on demand."""

    refreshable: ClassVar[bool] = True

    def __init__(
        self,
        token_url: str,
        username: str,
        password: SecretStr,
        *,
        session: requests.Session,
        timeout: tuple[float, float],
        refresh_margin: float | None = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        on_call: OnCall = uncounted,
    ) -> None:
        """Keep what fetching a token needs; nothing is fetched yet.

        Args:
            token_url: ``<base>/auth/token``.
            username: the Airflow user.
            password: its password; never shown.
            session: the client's session (its TLS settings apply to the token call too).
            timeout: (connect, read) seconds for the token call.
            refresh_margin: refresh this many seconds before expiry (at most a fifth of the
                token's life before it); None refreshes only when Airflow refuses the token.
            clock: monotonic clock, for tests.
            on_call: called before each token request is sent (the ``login`` call counter).
        """
        self.token_url = token_url
        self.username = username
        self._password = password
        self._session = session
        self._timeout = timeout
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._on_call = on_call
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at: float | None = None
        self.tokens_fetched = 0
        self._fetches = 0
        self._last_failure: ConfigError | AirflowUnavailableError | None = None

    def __repr__(self) -> str:
        """Show where tokens come from and for whom, never the password or a token."""
        return (
            f"JwtAuth(token_url={self.token_url!r}, username={self.username!r}, "
            f"password={self._password!r})"
        )

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add ``Authorization: Bearer <jwt>``, fetching a token first when needed.

        Args:
            r: the outgoing request.

        Returns:
            The same request.
        """
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r

    def _fresh(self) -> str | None:
        token, refresh_at = self._token, self._refresh_at
        if token is None or (refresh_at is not None and self._clock() >= refresh_at):
            return None
        return token

    def token(self) -> str:
        """The current token; fetches one (once, for all waiting threads) when missing or due.

        Returns:
            The raw JWT.

        Raises:
            ConfigError: Airflow refused the credentials, or TLS verification failed.
            AirflowUnavailableError: Airflow could not be reached or answered 429/5xx.
        """
        token = self._fresh()
        if token is not None:
            return token
        seen_fetches = self._fetches
        with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            failed = self._last_failure
            if failed is not None and self._fetches != seen_fetches:
                # a fetch failed while this thread waited: share its outcome, do not pile on
                raise _copy(failed) from None
            try:
                return self._fetch()
            except (ConfigError, AirflowUnavailableError) as exc:
                self._last_failure = exc
                raise
            finally:
                # counts finished fetches: a thread that saw the count before it was bumped
                # was already waiting during this fetch
                self._fetches += 1

    def invalidate(self, used_header: str | None) -> None:
        """Drop the token if it is the one Airflow refused; a newer one is kept.

        Args:
            used_header: the ``Authorization`` header of the refused request.
        """
        with self._lock:
            if self._token is not None and used_header == f"Bearer {self._token}":
                self._token = None

    def _fetch(self) -> str:
        body = {"username": self.username, "password": self._password.get_secret_value()}
        self._on_call()
        try:
            answer = self._session.post(self.token_url, json=body, timeout=self._timeout)
        except NO_ANSWER_ERRORS as exc:
            raise classify_failure(exc, self.token_url).error from None
        status = answer.status_code
        if is_transient(status):
            raise AirflowUnavailableError(
                ErrorCode.AIRFLOW_UNAVAILABLE,
                f"POST {self.token_url} answered {status}",
                {"reachable": True, "status": status},
            )
        token = _access_token(answer)
        if token is None:
            raise ConfigError(
                f"Airflow refused the credentials of user {self.username!r} at "
                f"POST {self.token_url} ({status}); check the username and password"
            )
        self.tokens_fetched += 1
        self._last_failure = None
        self._token = token
        self._refresh_at = self._due(token)
        return token

    def _due(self, token: str) -> float | None:
        if self._refresh_margin is None:
            return None
        lifetime = _lifetime(token)
        if lifetime is None:
            return None
        margin = min(self._refresh_margin, lifetime * _MARGIN_SHARE)
        return self._clock() + lifetime - margin


def _copy(failure: ConfigError | AirflowUnavailableError) -> Exception:
    """A fresh exception with the same meaning, for another thread to raise."""
    if isinstance(failure, AirflowUnavailableError):
        return AirflowUnavailableError(failure.code, failure.message, dict(failure.details))
    return ConfigError(str(failure))


def _access_token(answer: requests.Response) -> str | None:
    if not answer.ok:
        return None
    try:
        body: Any = answer.json()
    except ValueError:
        return None
    token = body.get("access_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None


def _lifetime(token: str) -> float | None:
    """Seconds between ``iat`` and ``exp`` of a JWT, read without verifying it."""
    parts = token.split(".")
    if len(parts) != 3:  # noqa: PLR2004 -- header.payload.signature
        return None
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims: Any = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    exp, iat = claims.get("exp"), claims.get("iat", time.time())
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        return None
    return max(float(exp) - float(iat), 0.0)
