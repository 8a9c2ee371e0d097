"""Kafka security end to end: the worker, ``send``, ``replay`` and ``doctor`` (spec §3, §5).

Over each of PLAINTEXT, SSL, SASL_PLAINTEXT/PLAIN and SASL_SSL/SCRAM-SHA-256/512, one
worker answers what ``send --wait`` and ``replay`` write, and ``doctor`` passes. A wrong
SASL password or an untrusted broker certificate fails closed: the worker exits 2 with a
critical log line naming the setting to fix, before it reads, answers, dead-letters or
commits anything; ``doctor`` and ``send`` name the same cause, and no secret is echoed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from consumer.cli import EXIT_FAILURE, EXIT_USAGE
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
)
from tests.security.conftest import ListenerWorker, Trust, security_env
from tests.waiting import wait_until

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


def reply_for(listener: ListenerWorker, key: str) -> dict[str, Any]:
    """Wait for the one reply to ``key``, read over the listener itself.

    Args:
        listener: the worker and listener.
        key: the request's idempotency key.

    Returns:
        The reply.
    """

    def answered() -> list[dict[str, Any]] | None:
        records = read_all(
            listener.bootstrap,
            listener.topics.replies,
            at_least=1,
            client_options=listener.options,
        )
        return replies_by_key(records).get(key)

    [reply] = wait_until(answered, timeout=60, interval=0.5, what=f"the reply to {key}")
    return reply


def test_send_wait_round_trip(airflow3: AirflowServer, listener_worker: ListenerWorker) -> None:
    """``send --wait`` over the listener triggers a run and prints the reply it reads back."""
    key = unique_name("send")
    done = run_cli(
        listener_worker.worker.env,
        "send",
        *("--dag", "devstack_paused", "--key", key, "--wait", "--timeout", "60"),
    )

    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert (reply["idempotency_key"], reply["status"]) == (key, "triggered")
    assert existing_runs(airflow3, "devstack_paused", [key]) == {key}


def test_replay_round_trip(airflow3: AirflowServer, listener_worker: ListenerWorker) -> None:
    """``replay`` over the listener re-drives a dead-lettered request, which is then answered."""
    key = unique_name("replay")
    produce(
        listener_worker.bootstrap,
        listener_worker.topics.dlq,
        [(key.encode(), request(key), [("error-code", b"airflow_unavailable")])],
        client_options=listener_worker.options,
    )

    done = run_cli(listener_worker.worker.env, "replay")

    assert done.returncode == 0, done.stderr
    assert "replayed 1" in done.stderr, done.stderr
    assert reply_for(listener_worker, key)["status"] == "triggered"
    assert existing_runs(airflow3, "devstack_paused", [key]) == {key}


def test_doctor_passes(listener_worker: ListenerWorker) -> None:
    """``doctor`` over the listener passes every check and names the protocol it connected with."""
    done = run_cli(listener_worker.worker.env, "doctor", "--timeout", "10")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert not [line for line in lines if line.startswith("✗")], done.stdout
    kafka = {line.split(":", 1)[0]: line for line in lines[:5]}
    assert kafka.keys() == {
        "✓ kafka",
        "✓ request topic",
        "✓ reply topic",
        "✓ DLQ topic",
        "✓ consumer group",
    }, done.stdout
    assert f"({listener_worker.protocol})" in kafka["✓ kafka"]


def trust_for(name: str, folder: Path) -> Trust:
    """``broker``, ``system`` or ``other``: a CA file of a CA that did not sign the broker."""
    if name == "other":
        path = folder / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(path))
        return path
    return "system" if name == "system" else "broker"


# case -> (protocol, mechanism, wrong password?, trust, what the message says, setting to fix)
FAIL_CLOSED = {
    "wrong-sasl-password": (
        "SASL_SSL",
        "SCRAM-SHA-256",
        True,
        "broker",
        "refused the SASL credentials for user scram-client (mechanism SCRAM-SHA-256)",
        "TRIGGER_CONSUMER_KAFKA_SASL_PASSWORD",
    ),
    "wrong-plain-password": (
        "SASL_PLAINTEXT",
        "PLAIN",
        True,
        "broker",
        "refused the SASL credentials for user plain-client (mechanism PLAIN)",
        "TRIGGER_CONSUMER_KAFKA_SASL_PASSWORD",
    ),
    "no-ca-file": (
        "SSL",
        None,
        False,
        "system",
        "presented a TLS certificate that is not trusted",
        "TRIGGER_CONSUMER_KAFKA_SSL_CAFILE",
    ),
    "wrong-ca-file": (
        "SASL_SSL",
        "SCRAM-SHA-512",
        False,
        "other",
        "presented a TLS certificate that is not trusted",
        "TRIGGER_CONSUMER_KAFKA_SSL_CAFILE",
    ),
}
FATAL_WITHIN = 30.0  # seconds: the refusal is known after one connection attempt


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
    """A refused worker exits 2 naming the cause and writes nothing; doctor and send say why."""
    protocol, mechanism, wrong_password, trust_name, cause, setting = FAIL_CLOSED[case]
    wrong = unique_name("wrong-kafka-secret") if wrong_password else None
    trust = trust_for(trust_name, tmp_path)
    env = security_env(secured_kafka, protocol, mechanism, password=wrong, trust=trust)
    plaintext = secured_kafka.endpoints["PLAINTEXT"]
    key = unique_name("refused")
    produce(plaintext, secured_topics.requests, [(key.encode(), request(key), [])])
    worker = make_secured_worker(env)
    since = secured_kafka.broker.log.stat().st_size

    worker.launch()
    exit_code = worker.wait(timeout=FATAL_WITHIN)

    assert exit_code == EXIT_USAGE, worker.tail()
    [fatal] = [e for e in worker.events() if e.get("event") == "configuration_error"]
    assert fatal["level"] == "critical"
    assert cause in fatal["error"] and setting in fatal["error"], fatal
    assert not [e for e in worker.events() if e.get("event") == "partitions_assigned"]
    wait_until(
        lambda: failed_authentications(secured_kafka, protocol, since) >= 1,
        timeout=10,
        what="the broker to log the refused connection",
    )
    assert end_offsets(plaintext, secured_topics.replies) == {0: 0}
    assert end_offsets(plaintext, secured_topics.dlq) == {0: 0}
    assert committed(plaintext, secured_topics.group, secured_topics.requests) == {}
    assert existing_runs(airflow3, "devstack_paused", [key]) == set()

    doctor = run_cli(worker.env, "doctor", "--timeout", "10")
    assert doctor.returncode == EXIT_FAILURE
    first = doctor.stdout.splitlines()[0]
    assert first.startswith("✗ kafka: ") and cause in first and setting in first, doctor.stdout

    sent = run_cli(worker.env, "send", "--dag", "devstack_paused", "--timeout", "10")
    assert sent.returncode == EXIT_USAGE, sent.stderr
    assert cause in sent.stderr and setting in sent.stderr, sent.stderr

    output = worker.log.read_text() + doctor.stdout + doctor.stderr + sent.stdout + sent.stderr
    for secret in (wrong, secured_kafka.credentials(mechanism or "PLAIN").password, PASSWORD):
        if secret:
            assert secret not in output
