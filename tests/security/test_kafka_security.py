"""Kafka security end to end: the worker, ``send`` and ``doctor`` over SSL and SASL (spec §5).

Every secured listener carries a request through a real worker to Airflow 3 and the reply
back; wrong credentials and an untrusted broker certificate fail closed: the broker
refuses the worker, which answers nothing, and ``doctor`` says ✗ without echoing a secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from devstack.airflow import PASSWORD, AirflowServer
from devstack.kafka_security import SecuredBroker
from tests.conftest import unique_name
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
)
from tests.security.conftest import Trust, client_options, security_env
from tests.waiting import wait_until

SECURED = [
    ("SSL", None),
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
]
CLI_TIMEOUT = 180.0


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``trigger-consumer <args>`` to completion with ``env``.

    Args:
        env: the full environment.
        args: the subcommand and its flags.

    Returns:
        The finished process with its text output.
    """
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def failed_authentications(broker: SecuredBroker, protocol: str, since: int) -> int:
    """How many connections to ``protocol``'s listener the broker refused after byte ``since``.

    Args:
        broker: the secured broker.
        protocol: the listener.
        since: an offset into the broker's log.

    Returns:
        The count of its ``Failed authentication`` lines (bad SASL credentials or TLS).
    """
    port = broker.endpoints[protocol].rsplit(":", 1)[1]
    with broker.broker.log.open("rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    return sum(
        1
        for line in text.splitlines()
        if "Failed authentication" in line and f"channelId=127.0.0.1:{port}-" in line
    )


@pytest.mark.parametrize(
    "listener", SECURED, ids=[p if m is None else f"{p}-{m}" for p, m in SECURED]
)
def test_round_trip_over_secured_listener(
    secured_kafka: SecuredBroker,
    airflow3: AirflowServer,
    secured_topics: Topics,
    make_secured_worker: Callable[..., WorkerProcess],
    listener: tuple[str, str | None],
) -> None:
    """A request written over the listener creates a run on Airflow 3 and is answered there."""
    protocol, mechanism = listener
    bootstrap = secured_kafka.endpoints[protocol]
    options = client_options(secured_kafka, protocol, mechanism)
    key = unique_name("sec")
    produce(
        bootstrap,
        secured_topics.requests,
        [(key.encode(), request(key), [])],
        client_options=options,
    )

    with running(make_secured_worker(security_env(secured_kafka, protocol, mechanism))):
        replies = read_all(bootstrap, secured_topics.replies, at_least=1, client_options=options)

    [reply] = replies_by_key(replies)[key]
    assert reply["status"] == "triggered", reply
    assert existing_runs(airflow3, "devstack_paused", [key]) == {key}


def test_send_wait_over_sasl_ssl_scram(
    secured_kafka: SecuredBroker,
    airflow3: AirflowServer,
    make_secured_worker: Callable[..., WorkerProcess],
) -> None:
    """``send --wait`` over SASL_SSL/SCRAM-SHA-512 produces the request and prints its reply."""
    worker = make_secured_worker(security_env(secured_kafka, "SASL_SSL", "SCRAM-SHA-512"))
    key = unique_name("send")
    with running(worker):
        done = run_cli(
            worker.env,
            "send",
            "--dag",
            "devstack_paused",
            "--key",
            key,
            "--wait",
            "--timeout",
            "120",
        )

    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert (reply["idempotency_key"], reply["status"]) == (key, "triggered")
    assert existing_runs(airflow3, "devstack_paused", [key]) == {key}


def trust_for(name: str, folder: Path) -> Trust:
    """``broker``, ``system`` or ``other``: a CA file of a CA that did not sign the broker."""
    if name == "other":
        path = folder / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(path))
        return path
    return "system" if name == "system" else "broker"


FAIL_CLOSED = {
    "wrong-sasl-password": ("SASL_SSL", "SCRAM-SHA-256", "wrong", "broker"),
    "wrong-plain-password": ("SASL_PLAINTEXT", "PLAIN", "wrong", "broker"),
    "no-ca-file": ("SSL", None, None, "system"),
    "wrong-ca-file": ("SASL_SSL", "SCRAM-SHA-512", None, "other"),
}


@pytest.mark.parametrize("case", FAIL_CLOSED)
def test_refused_connection_fails_closed(
    secured_kafka: SecuredBroker,
    airflow3: AirflowServer,
    secured_topics: Topics,
    make_secured_worker: Callable[..., WorkerProcess],
    *,
    tmp_path: Path,
    case: str,
) -> None:
    """A refused worker never owns partitions and writes nothing; doctor says ✗ kafka, no secret."""
    protocol, mechanism, password, trust_name = FAIL_CLOSED[case]
    wrong = unique_name("wrong-kafka-secret") if password else None
    trust = trust_for(trust_name, tmp_path)
    env = security_env(secured_kafka, protocol, mechanism, password=wrong, trust=trust)
    plaintext = secured_kafka.endpoints["PLAINTEXT"]
    key = unique_name("refused")
    produce(plaintext, secured_topics.requests, [(key.encode(), request(key), [])])
    worker = make_secured_worker(env)
    since = secured_kafka.broker.log.stat().st_size

    worker.launch()
    process = worker.process
    assert process is not None
    wait_until(
        lambda: (
            process.poll() is not None
            or failed_authentications(secured_kafka, protocol, since) >= 3
        ),
        timeout=120,
        what="the worker to exit or be refused three times",
    )
    exit_code = process.poll()
    worker.close()

    assert failed_authentications(secured_kafka, protocol, since) >= 1
    assert exit_code is None or exit_code != 0, worker.tail()
    assert not [e for e in worker.events() if e.get("event") == "partitions_assigned"]
    assert end_offsets(plaintext, secured_topics.replies) == {0: 0}
    assert end_offsets(plaintext, secured_topics.dlq) == {0: 0}
    assert committed(plaintext, secured_topics.group, secured_topics.requests) == {}
    assert existing_runs(airflow3, "devstack_paused", [key]) == set()

    doctor = run_cli(worker.env, "doctor", "--timeout", "10")
    assert doctor.returncode == 1
    assert doctor.stdout.splitlines()[0].startswith("✗ kafka: cannot reach"), doctor.stdout
    output = doctor.stdout + doctor.stderr
    for secret in (wrong, secured_kafka.credentials(mechanism or "PLAIN").password, PASSWORD):
        if secret:
            assert secret not in output
