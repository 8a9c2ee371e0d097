"""Auth methods: secrets hidden, JWT cached and refreshed once for many threads, expiry handled."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator

import pytest
import requests
from pydantic import SecretStr

from consumer.airflow.auth import BasicAuth, JwtAuth, StaticToken
from consumer.errors import AirflowUnavailableError, ConfigError, ErrorCode
from devstack.airflow import AirflowServer
from tests.faults.server import FaultInjector, Reply
from tests.waiting import wait_until

TIMEOUT = (5.0, 10.0)


def fake_jwt(claims: dict[str, int]) -> str:
    """An unsigned token with the given claims (the client only reads exp and iat)."""
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzUxMiJ9.{payload}.c2ln"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """The current reading."""
        return self.now


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A plain session, closed after the test."""
    with requests.Session() as made:
        yield made


def jwt_auth(server: AirflowServer, session: requests.Session, password: str) -> JwtAuth:
    """A JwtAuth for the devstack admin of ``server`` with ``password``."""
    return JwtAuth(
        f"{server.url}/auth/token",
        server.describe()["username"],
        SecretStr(password),
        session=session,
        timeout=TIMEOUT,
    )


def test_repr_never_shows_a_secret() -> None:
    """No auth class shows its password or token in repr."""
    shown = " ".join(
        repr(auth)
        for auth in (
            BasicAuth("admin", SecretStr("basic-secret-1")),
            StaticToken(SecretStr("token-secret-2")),
            JwtAuth(
                "http://x/auth/token",
                "admin",
                SecretStr("jwt-secret-3"),
                session=requests.Session(),
                timeout=TIMEOUT,
            ),
        )
    )
    assert "admin" in shown
    for secret in ("basic-secret-1", "token-secret-2", "jwt-secret-3"):
        assert secret not in shown


def test_many_threads_share_one_token_fetch(
    airflow3: AirflowServer, session: requests.Session
) -> None:
    """Twenty threads asking at once cause one POST /auth/token, and one more after invalidation."""
    auth = jwt_auth(airflow3, session, airflow3.describe()["password"])
    tokens: list[str] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(20)

    def ask() -> None:
        barrier.wait()
        try:
            tokens.append(auth.token())
        except (ConfigError, AirflowUnavailableError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(tokens)) == 1
    assert auth.tokens_fetched == 1
    for _ in range(5):
        auth.invalidate(f"Bearer {tokens[0]}")
    auth.token()
    for _ in range(5):
        auth.invalidate(f"Bearer {tokens[0]}")
    auth.token()
    assert auth.tokens_fetched == 2


def test_wrong_password_at_the_token_endpoint_is_a_config_error(
    airflow3: AirflowServer, session: requests.Session
) -> None:
    """Airflow 3 answering 401 "Invalid credentials" raises ConfigError without the password."""
    auth = jwt_auth(airflow3, session, "definitely-wrong-pw-7")
    with pytest.raises(ConfigError) as caught:
        auth.token()
    assert "definitely-wrong-pw-7" not in str(caught.value)


def test_a_failed_fetch_is_shared_by_the_threads_that_waited_for_it(
    faults: FaultInjector,
) -> None:
    """When the token fetch times out, threads queued behind it get the error, not a refetch."""
    faults.script("POST", "/auth/token", Reply(stall=30))
    with requests.Session() as plain:
        auth = JwtAuth(
            f"{faults.url}/auth/token",
            "admin",
            SecretStr("pw"),
            session=plain,
            timeout=(2.0, 1.0),
        )
        errors: list[AirflowUnavailableError] = []
        barrier = threading.Barrier(10)

        def ask() -> None:
            barrier.wait()
            try:
                auth.token()
            except AirflowUnavailableError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(errors) == 10
    assert all(e.code is ErrorCode.AIRFLOW_UNAVAILABLE for e in errors)
    assert len(faults.seen("POST", "/auth/token")) == 1


def test_token_is_refreshed_before_it_expires(session: requests.Session) -> None:
    """A token is reused until a fifth of its life remains (or the margin), then refetched."""
    clock = FakeClock()
    auth = JwtAuth(
        "http://unused/auth/token",
        "admin",
        SecretStr("pw"),
        session=session,
        timeout=TIMEOUT,
        refresh_margin=60.0,
        clock=clock,
    )
    assert auth._due(fake_jwt({"iat": 1000, "exp": 1100})) == 80.0
    assert auth._due(fake_jwt({"iat": 0, "exp": 86400})) == 86340.0
    assert auth._due("not-a-jwt") is None


def test_short_lived_jwt_is_refreshed_before_expiry(
    short_jwt_airflow3: AirflowServer, session: requests.Session
) -> None:
    """On an Airflow 3 issuing 5 s tokens with no leeway, the token is renewed before it expires."""
    server = short_jwt_airflow3
    auth = jwt_auth(server, session, server.describe()["password"])
    dags = f"{server.url}/api/v2/dags"
    assert session.get(dags, auth=auth, timeout=TIMEOUT).status_code == 200
    stale = f"Bearer {auth.token()}"
    wait_until(
        lambda: (
            session.get(dags, headers={"Authorization": stale}, timeout=TIMEOUT).status_code == 401
        ),
        timeout=30,
        interval=0.5,
        what="the first token to expire",
    )
    assert session.get(dags, auth=auth, timeout=TIMEOUT).status_code == 200
    assert auth.tokens_fetched >= 2
