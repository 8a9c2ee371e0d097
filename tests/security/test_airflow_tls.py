"""TLS to Airflow end to end: a real Airflow 3 API server over HTTPS with a test CA (spec §5).

One extra API server (same metadata DB as the shared Airflow 3) serves HTTPS for the whole
module, with a certificate for ``127.0.0.1`` from a throwaway CA. With that CA as the CA
bundle the client, a worker and ``doctor`` work; without it (the system's trust) or with
another CA's bundle they fail closed with a configuration error (spec §3) and create,
reply and dead-letter nothing. Runs are read back through the shared plain-HTTP server.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import trustme
from pydantic import SecretStr

from consumer.airflow import AirflowClient, AirflowConnection
from consumer.cli import EXIT_USAGE
from consumer.errors import ConfigError
from consumer.run_id import run_id_for
from consumer.settings import Settings
from devstack.airflow import PASSWORD, USERNAME, AirflowServer
from devstack.tls import ServerTls, issue_tls
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    committed,
    end_offsets,
    existing_runs,
    produce,
    read_all,
    replies_by_key,
    request,
    running,
    worker_env,
)

CA_BUNDLE_ENV = "TRIGGER_CONSUMER_AIRFLOW_CA_BUNDLE"
DAG_ID = "devstack_paused"  # runs stay queued: nothing executes, the runs only need to exist
# trust other than the server's CA: the system store, or a CA that did not sign the server
UNTRUSTED = ["system", "other-ca"]
CLI_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def airflow_tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    """A fresh CA and the server certificate for ``127.0.0.1`` it signed (PEM files)."""
    return issue_tls(tmp_path_factory.mktemp("airflow-tls"))


@pytest.fixture(scope="module")
def https_airflow3(airflow3: AirflowServer, airflow_tls: ServerTls) -> Iterator[AirflowServer]:
    """An extra Airflow 3 API server serving only HTTPS, tied to this process, stopped after."""
    server = airflow3.start_extra_api({}, tie_to_parent=True, tls=airflow_tls)
    yield server
    server.stop_api()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificate of a CA that did not sign the server's certificate."""
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def untrusted_bundle(trust: str, other_ca: Path) -> Path | None:
    """The CA bundle of an ``UNTRUSTED`` case: None (system trust) or the other CA's file."""
    return None if trust == "system" else other_ca


@pytest.fixture
def tls_topics(new_topic: Callable[..., str]) -> Topics:
    """Request, reply and dead-letter topics and a group of this test's own."""
    return Topics(
        requests=new_topic(prefix="tls-requests"),
        replies=new_topic(prefix="tls-replies"),
        dlq=new_topic(prefix="tls-dlq"),
        group=unique_name("tls-group"),
    )


@pytest.fixture
def https_env(
    kafka: KafkaCluster, https_airflow3: AirflowServer, tls_topics: Topics, tmp_path: Path
) -> Callable[[Path | None], dict[str, str]]:
    """Factory: the worker's (and CLI's) environment on the HTTPS server with a CA bundle."""

    def make(ca_bundle: Path | None) -> dict[str, str]:
        extra = {} if ca_bundle is None else {CA_BUNDLE_ENV: str(ca_bundle)}
        return worker_env(
            bootstrap=kafka.bootstrap_servers,
            airflow=https_airflow3,
            topics=tls_topics,
            store=tmp_path / "store.db",
            extra=extra,
        )

    return make


def admin_client(server: AirflowServer, ca_bundle: Path | None) -> AirflowClient:
    """The product's client for ``server`` as the devstack admin, trusting ``ca_bundle``."""
    settings = Settings(
        airflow_url=server.url,
        airflow_username=USERNAME,
        airflow_password=SecretStr(PASSWORD),
        airflow_ca_bundle=ca_bundle,
    )
    return AirflowClient(AirflowConnection.from_settings(settings))


def run_doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``trigger-consumer doctor`` with ``env`` to completion.

    Args:
        env: the full environment.

    Returns:
        The finished process with its text output.
    """
    return subprocess.run(
        [sys.executable, "-m", "consumer", "doctor", "--timeout", "5"],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_TIMEOUT,
        check=False,
    )


def doctor_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each doctor output line by its check name."""
    return {line[2:].split(": ", 1)[0]: line for line in result.stdout.splitlines()}


def test_server_answers_only_https_on_127_0_0_1(https_airflow3: AirflowServer) -> None:
    """The extra server answers at ``https://127.0.0.1:<port>``; plain HTTP there gets nothing."""
    assert https_airflow3.url == f"https://127.0.0.1:{https_airflow3.port}"
    assert https_airflow3.api_answers()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{https_airflow3.port}/api/v2/version", timeout=5)


def test_client_with_the_ca_bundle_detects_logs_in_and_triggers(
    https_airflow3: AirflowServer, airflow3: AirflowServer, airflow_tls: ServerTls
) -> None:
    """With the CA bundle the client detects v2, logs in (JWT), triggers a run and reads it back."""
    run_id = unique_name("tls")
    with admin_client(https_airflow3, airflow_tls.ca) as client:
        assert client.api_version == "v2"
        assert client.ping() == airflow3.version
        result = client.trigger(DAG_ID, run_id, conf={"via": "https"})
        run = client.get_run(DAG_ID, run_id)

    assert (result.dag_run_id, result.created, result.dag_paused) == (run_id, True, True)
    assert result.run_url.startswith(f"{https_airflow3.url}/dags/{DAG_ID}/runs/")
    assert run is not None
    assert (run.dag_run_id, run.state) == (run_id, "queued")
    # the same run through the shared plain-HTTP server: it is in Airflow's DB
    with admin_client(airflow3, None) as plain:
        assert plain.get_run(DAG_ID, run_id) is not None


@pytest.mark.parametrize("trust", UNTRUSTED)
def test_client_without_the_ca_fails_closed(
    https_airflow3: AirflowServer, airflow3: AirflowServer, other_ca: Path, trust: str
) -> None:
    """Without the server's CA a trigger raises ConfigError (TLS) at once and creates no run."""
    run_id = unique_name("tls-untrusted")
    with (
        admin_client(https_airflow3, untrusted_bundle(trust, other_ca)) as client,
        pytest.raises(ConfigError, match=r"TLS verification failed for https://127\.0\.0\.1:"),
    ):
        client.trigger(DAG_ID, run_id)

    with admin_client(airflow3, None) as plain:
        assert plain.get_run(DAG_ID, run_id) is None


def test_worker_over_https_triggers_and_replies(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    https_airflow3: AirflowServer,
    airflow_tls: ServerTls,
    tls_topics: Topics,
    *,
    https_env: Callable[[Path | None], dict[str, str]],
    tmp_path: Path,
) -> None:
    """A worker given the CA bundle turns a request into a run over HTTPS and replies triggered."""
    key = unique_name("tls")
    produce(kafka.bootstrap_servers, tls_topics.requests, [(key.encode(), request(key), [])])
    worker = WorkerProcess(env=https_env(airflow_tls.ca), log=tmp_path / "worker.log")

    with running(worker):
        replies = read_all(kafka.bootstrap_servers, tls_topics.replies, at_least=1)

    [reply] = replies_by_key(replies)[key]
    assert reply["status"] == "triggered", reply
    assert reply["dag_run_id"] == run_id_for(key), reply
    assert reply["run_url"].startswith(f"{https_airflow3.url}/dags/{DAG_ID}/runs/"), reply
    assert existing_runs(airflow3, DAG_ID, [key]) == {key}
    assert end_offsets(kafka.bootstrap_servers, tls_topics.dlq) == {0: 0}


def test_worker_without_the_ca_bundle_exits_with_a_config_error(
    kafka: KafkaCluster,
    airflow3: AirflowServer,
    tls_topics: Topics,
    https_env: Callable[[Path | None], dict[str, str]],
    tmp_path: Path,
) -> None:
    """Without the CA bundle the worker exits 2 and replies, dead-letters and commits nothing."""
    key = unique_name("tls-untrusted")
    produce(kafka.bootstrap_servers, tls_topics.requests, [(key.encode(), request(key), [])])
    worker = WorkerProcess(env=https_env(None), log=tmp_path / "worker.log")

    worker.launch()
    try:
        exit_code = worker.wait(timeout=120)
    finally:
        worker.close()

    assert exit_code == EXIT_USAGE, worker.tail()
    fatal = [e for e in worker.events() if e.get("level") == "critical"]
    assert fatal, worker.tail()
    assert "TLS verification failed" in str(fatal[0].get("error")), fatal
    bootstrap = kafka.bootstrap_servers
    assert end_offsets(bootstrap, tls_topics.replies) == {0: 0}
    assert end_offsets(bootstrap, tls_topics.dlq) == {0: 0}
    assert committed(bootstrap, tls_topics.group, tls_topics.requests) == {}
    assert existing_runs(airflow3, DAG_ID, [key]) == set()


def test_doctor_passes_with_the_ca_bundle(
    https_airflow3: AirflowServer,
    airflow_tls: ServerTls,
    https_env: Callable[[Path | None], dict[str, str]],
) -> None:
    """Doctor against the HTTPS URL with the CA bundle: Airflow and its credentials are ✓."""
    result = run_doctor(https_env(airflow_tls.ca))

    lines = doctor_lines(result)
    assert lines["airflow"].startswith("✓ airflow: Airflow 3.3.2 at https://127.0.0.1:"), lines
    assert lines["airflow credentials"].startswith("✓"), lines
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("trust", UNTRUSTED)
def test_doctor_without_the_ca_bundle_names_the_setting(
    https_airflow3: AirflowServer,
    other_ca: Path,
    https_env: Callable[[Path | None], dict[str, str]],
    trust: str,
) -> None:
    """Doctor against the HTTPS URL without the server's CA: ✗ airflow naming the CA setting."""
    result = run_doctor(https_env(untrusted_bundle(trust, other_ca)))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = doctor_lines(result)
    assert lines["airflow"].startswith("✗ airflow: TLS verification failed"), lines
    assert CA_BUNDLE_ENV in lines["airflow"], lines
    assert lines["airflow credentials"].startswith("✗ airflow credentials: not checked"), lines
    assert PASSWORD not in result.stdout + result.stderr
