"""A rotated Deployment API token (Astronomer) read from AIRFLOW_TOKEN_FILE without a restart.

The proxy in front of each real Airflow accepts only the token the file holds at that moment,
as a Deployment does once its token is rotated: the old one is refused at once.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.airflow import AirflowClient, AirflowConnection
from consumer.airflow.token_file import TokenFileAuth
from consumer.errors import ConfigError
from consumer.settings import load_settings
from devstack.airflow import AirflowServer
from tests.cloud.bearer_proxy import BearerProxy
from tests.cloud.contract import check_rerun, check_trigger_contract
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    produce,
    read_all,
    replies_by_key,
    request,
)


def new_token() -> str:
    """A Deployment API token of a fixed length (rotations keep the file's size)."""
    return f"astro-{secrets.token_hex(24)}"


def rotate(path: Path, token: str) -> None:
    """Replace the file as a secret store does: a new file renamed over the old one."""
    fresh = path.with_suffix(".new")
    fresh.write_text(token + "\n")
    fresh.replace(path)


@pytest.fixture
def deployment(airflow: AirflowServer, tmp_path: Path) -> Iterator[tuple[BearerProxy, Path]]:
    """A proxy accepting only the token currently in ``token`` (which holds a first one)."""
    path = tmp_path / "token"
    path.write_text(new_token() + "\n")

    def judge(token: str) -> str:
        return "ok" if token == path.read_text().strip() else "unknown"

    proxy = BearerProxy(airflow, judge)
    yield proxy, path
    proxy.close()


def client_for(proxy: BearerProxy, path: Path) -> AirflowClient:
    """A client reading its token from ``path`` (as TRIGGER_CONSUMER_AIRFLOW_TOKEN_FILE)."""
    settings = load_settings(airflow_url=proxy.url, airflow_token_file=str(path))
    return AirflowClient(AirflowConnection.from_settings(settings))


def test_client_contract_across_a_rotation(
    deployment: tuple[BearerProxy, Path], airflow: AirflowServer
) -> None:
    """The contract holds before and after the file is rotated; the old token is never sent."""
    proxy, path = deployment
    with client_for(proxy, path) as client:
        check_trigger_contract(client)
        rotate(path, new_token())
        check_trigger_contract(client)
        check_rerun(client)
        assert client.api_version == airflow.api_version

    assert proxy.verdicts["unknown"] == 0
    assert len(proxy.tokens_seen) == 2


def test_rewrite_that_looks_unchanged_is_read_after_a_401(
    deployment: tuple[BearerProxy, Path], airflow3: AirflowServer
) -> None:
    """A token rewritten in place with the same size and mtime is picked up after one 401."""
    proxy, path = deployment
    with client_for(proxy, path) as client:
        client.ping()
        before = path.stat()
        with path.open("r+") as fh:  # same inode, same size
            fh.write(new_token() + "\n")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        client.ping()

    assert proxy.verdicts["unknown"] == 1
    assert len(proxy.tokens_seen) == 2


def test_token_file_errors(tmp_path: Path) -> None:
    """A missing file stops start-up; an emptied one keeps the last token; repr shows no token."""
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError, match="airflow_token_file"):
        load_settings(airflow_token_file=str(missing))
    path = tmp_path / "token"
    token = new_token()
    path.write_text(token)
    auth = TokenFileAuth(path)
    assert auth.token().get_secret_value() == token
    path.write_text("")
    assert auth.token().get_secret_value() == token  # mid-rotation: the last one stays
    assert token not in repr(auth)
    with pytest.raises(ConfigError, match="no Airflow token"):
        TokenFileAuth(missing).token()


def test_worker_keeps_working_across_a_rotation(
    deployment: tuple[BearerProxy, Path],
    airflow: AirflowServer,
    kafka: KafkaCluster,
    cloud_topics: Topics,
    cloud_worker: Callable[..., WorkerProcess],
) -> None:
    """Requests before and after a rotation are both triggered by the same worker process."""
    proxy, path = deployment
    env = {
        "TRIGGER_CONSUMER_AIRFLOW_URL": proxy.url,
        "TRIGGER_CONSUMER_AIRFLOW_TOKEN_FILE": str(path),
    }
    worker = cloud_worker(airflow, env)
    worker.start()
    first, second = unique_name("astro-a"), unique_name("astro-b")
    bootstrap = kafka.bootstrap_servers
    produce(bootstrap, cloud_topics.requests, [(None, request(first, dag_id="devstack_plain"), [])])
    read_all(bootstrap, cloud_topics.replies, at_least=1)
    rotate(path, new_token())
    produce(
        bootstrap, cloud_topics.requests, [(None, request(second, dag_id="devstack_plain"), [])]
    )
    replies = replies_by_key(read_all(bootstrap, cloud_topics.replies, at_least=2))

    assert worker.terminate() == 0, worker.tail()
    assert [r["status"] for r in replies[first]] == ["triggered"]
    assert [r["status"] for r in replies[second]] == ["triggered"]
    assert proxy.verdicts["unknown"] == 0
    assert len(proxy.tokens_seen) == 2
