"""AIRFLOW_AUTH=google against a token-endpoint stand-in and a token-checking proxy (Composer).

google-auth's default credentials come from a service-account key file whose ``token_uri``
is the stand-in; the proxy in front of each real Airflow forwards only requests carrying a
live token the stand-in issued, so a token used past its expiry would be seen as a 401.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from consumer.airflow import AirflowClient, AirflowConnection
from consumer.errors import ConfigError
from consumer.settings import Settings
from devstack.airflow import AirflowServer
from tests.cloud.bearer_proxy import BearerProxy
from tests.cloud.contract import check_rerun, check_trigger_contract
from tests.cloud.google_token_standin import ACCOUNT, GoogleTokenStandIn
from tests.cloud.scenario import tracked_request_round_trip
from tests.conftest import KafkaCluster
from tests.scenarios.harness import Topics, WorkerProcess
from tests.waiting import wait_until


@dataclass
class Composer:
    """The token endpoint, the proxy in front of Airflow and the key file pointing at it."""

    tokens: GoogleTokenStandIn
    proxy: BearerProxy
    key_file: Path

    def client(self) -> AirflowClient:
        """A client with AIRFLOW_AUTH=google for the proxy."""
        settings = Settings(airflow_url=self.proxy.url, airflow_auth="google")
        return AirflowClient(AirflowConnection.from_settings(settings))


@pytest.fixture
def composer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Composer]]:
    """Factory: a Composer stand-in for a real Airflow; this process's Google env on it."""
    made: list[Composer] = []

    def make(server: AirflowServer, *, token_life: int = 3600) -> Composer:
        tokens = GoogleTokenStandIn(token_life=token_life)
        key_file = tokens.key_file(tmp_path / f"key-{len(made)}.json")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        made.append(Composer(tokens, BearerProxy(server, tokens.valid), key_file))
        return made[-1]

    yield make
    for each in made:
        each.proxy.close()
        each.tokens.close()


def test_client_contract_with_google_tokens(
    composer: Callable[..., Composer], airflow: AirflowServer
) -> None:
    """Trigger, duplicate, 404, 400 and a re-run work with one token, never a refused one."""
    stand_in = composer(airflow)
    with stand_in.client() as client:
        check_trigger_contract(client)
        check_rerun(client)
        assert client.api_version == airflow.api_version  # detection with the token

    assert stand_in.tokens.issued == 1
    assert stand_in.proxy.verdicts["ok"] > 5
    assert stand_in.proxy.verdicts["expired"] == stand_in.proxy.verdicts["unknown"] == 0


def test_token_is_refreshed_before_it_expires(
    composer: Callable[..., Composer], airflow3: AirflowServer
) -> None:
    """With 6 s tokens, calls every half second over three lifetimes never send an expired one."""
    stand_in = composer(airflow3, token_life=6)
    with stand_in.client() as client:

        def third_token() -> bool:
            client.ping()
            return stand_in.tokens.issued >= 3

        wait_until(third_token, timeout=40, interval=0.5, what="a third token")

    assert stand_in.proxy.verdicts["expired"] == 0
    assert stand_in.proxy.verdicts["unknown"] == 0
    assert len(stand_in.proxy.tokens_seen) >= 3


def test_refused_token_is_replaced_once(
    composer: Callable[..., Composer], airflow3: AirflowServer
) -> None:
    """A token the service stops accepting (401) is dropped and the call resent with a new one."""
    stand_in = composer(airflow3)
    with stand_in.client() as client:
        client.ping()
        stand_in.tokens.revoke()
        client.ping()

    assert stand_in.proxy.verdicts["unknown"] == 1
    assert stand_in.tokens.issued == 2


def test_a_key_google_refuses_is_a_config_error(
    composer: Callable[..., Composer], airflow3: AirflowServer
) -> None:
    """A key file whose signature the endpoint rejects stops the worker and shows no key."""
    stand_in = composer(airflow3)
    info = json.loads(stand_in.key_file.read_text())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    stand_in.key_file.write_text(json.dumps(info))

    with stand_in.client() as client, pytest.raises(ConfigError, match="Google refused") as caught:
        client.ping()

    assert stand_in.tokens.refused == 1
    assert ACCOUNT in str(caught.value)
    assert "PRIVATE KEY" not in f"{caught.value} {caught.value!r} {client!r}"


def test_no_google_credentials_is_a_config_error(
    composer: Callable[..., Composer], airflow3: AirflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without default credentials the client is not built, and the error says where to look."""
    composer(airflow3)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        AirflowClient(AirflowConnection.from_settings(Settings(airflow_auth="google")))


def test_worker_end_to_end_with_google_tokens(
    composer: Callable[..., Composer],
    airflow: AirflowServer,
    kafka: KafkaCluster,
    cloud_topics: Topics,
    cloud_worker: Callable[..., WorkerProcess],
) -> None:
    """A tracked request through the worker gets `triggered` and `completed` with Google tokens."""
    stand_in = composer(airflow)
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(stand_in.key_file),
        "TRIGGER_CONSUMER_AIRFLOW_AUTH": "google",
        "TRIGGER_CONSUMER_AIRFLOW_URL": stand_in.proxy.url,
    }

    replies = tracked_request_round_trip(kafka, cloud_topics, cloud_worker(airflow, env))

    assert [r["status"] for r in replies] == ["triggered", "completed"]
    assert replies[1]["run_state"] == "success"
    assert stand_in.proxy.verdicts["expired"] == stand_in.proxy.verdicts["unknown"] == 0
