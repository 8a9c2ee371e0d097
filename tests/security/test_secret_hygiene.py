"""No secret leaves the process (spec §5): logs, output, replies, DLQ, /metrics, errors, repr.

Known secret values (the SASL password of the secured broker, an Airflow password, a
static Airflow token) are configured on real runs of the worker, ``send`` and ``doctor``,
including runs that fail loudly because Airflow refuses them; then every text those runs
produced is searched for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import requests
import trustme

from consumer.errors import ConfigError
from consumer.settings import load_settings
from devstack import procs
from devstack.airflow import PASSWORD, AirflowServer
from devstack.kafka_security import SecuredBroker
from tests.conftest import unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    end_offsets,
    produce,
    read_all,
    request,
    running,
)
from tests.security.conftest import security_env
from tests.waiting import wait_until

CLI_TIMEOUT = 180.0
PROTOCOL, MECHANISM = "SASL_SSL", "SCRAM-SHA-256"


def run_cli(env: dict[str, str], *args: str) -> str:
    """Run ``trigger-consumer <args>`` to completion and return stdout and stderr together.

    Args:
        env: the full environment.
        args: the subcommand and its flags.

    Returns:
        Everything the command printed, with its exit code appended.
    """
    done = subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return f"{done.stdout}\n{done.stderr}\nexit {done.returncode}"


def topic_text(bootstrap: str, topic: str) -> str:
    """Every record of ``topic`` (keys, values and headers) as one text."""
    count = sum(end_offsets(bootstrap, topic).values())
    records = read_all(bootstrap, topic, at_least=count, timeout=60) if count else []
    return "\n".join(
        f"{record.key!r} {record.value!r} {record.headers!r} "
        + record.value.decode(errors="replace")
        for record in records
    )


def metrics_text(port: int) -> str:
    """The worker's ``/metrics`` page."""
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert answer.status_code == 200
    return answer.text


def assert_no_secret(secrets: Iterable[str], **texts: str) -> None:
    """Fail naming the text and the secret when any secret occurs in any text.

    Args:
        secrets: the secret values.
        texts: what to search, by a name for the failure message.
    """
    leaks = [
        f"{where} contains secret #{i}"
        for where, text in texts.items()
        for i, secret in enumerate(secrets)
        if secret in text
    ]
    assert not leaks, leaks


def wait_for_exit(worker: WorkerProcess, timeout: float = 120) -> int:
    """Wait until the worker stops by itself and return its exit code."""
    assert worker.process is not None
    return worker.wait(timeout=timeout)


@pytest.fixture
def sasl_env(secured_kafka: SecuredBroker) -> dict[str, str]:
    """Worker variables for SASL_SSL/SCRAM-SHA-256 with the right (secret) password."""
    return security_env(secured_kafka, PROTOCOL, MECHANISM)


def test_worker_refused_by_airflow_leaks_nothing(
    secured_kafka: SecuredBroker,
    secured_topics: Topics,
    make_secured_worker: Callable[..., WorkerProcess],
    sasl_env: dict[str, str],
) -> None:
    """A wrong Airflow password stops the worker loudly; no output names it or the SASL password."""
    airflow_secret = unique_name("airflow-secret")
    port = procs.free_port()
    worker = make_secured_worker(
        sasl_env,
        airflow_password=airflow_secret,
        extra={"TRIGGER_CONSUMER_HTTP_PORT": str(port)},
    )
    key = unique_name("refused")
    worker.start()
    metrics = wait_until(lambda: metrics_text(port), timeout=30, what="/metrics")
    produce(
        secured_kafka.endpoints["PLAINTEXT"],
        secured_topics.requests,
        [(key.encode(), request(key), [])],
    )
    exit_code = wait_for_exit(worker)

    assert exit_code != 0
    assert "configuration_error" in worker.log.read_text()
    plaintext = secured_kafka.endpoints["PLAINTEXT"]
    doctor = run_cli(worker.env, "doctor")
    assert "✗ airflow credentials" in doctor
    assert_no_secret(
        [airflow_secret, secured_kafka.scram.password],
        log=worker.log.read_text(),
        metrics=metrics,
        replies=topic_text(plaintext, secured_topics.replies),
        dlq=topic_text(plaintext, secured_topics.dlq),
        doctor=doctor,
        doctor_json=run_cli(worker.env, "doctor", "--json"),
    )


def test_worker_with_static_token_leaks_nothing(
    secured_kafka: SecuredBroker,
    secured_topics: Topics,
    make_secured_worker: Callable[..., WorkerProcess],
    sasl_env: dict[str, str],
) -> None:
    """A refused static Airflow token stops the worker loudly; no output names the token."""
    token = unique_name("token-secret")
    port = procs.free_port()
    worker = make_secured_worker(
        sasl_env,
        extra={"TRIGGER_CONSUMER_HTTP_PORT": str(port), "TRIGGER_CONSUMER_AIRFLOW_TOKEN": token},
    )
    for name in ("TRIGGER_CONSUMER_AIRFLOW_USERNAME", "TRIGGER_CONSUMER_AIRFLOW_PASSWORD"):
        del worker.env[name]
    key = unique_name("token")
    worker.start()
    metrics = wait_until(lambda: metrics_text(port), timeout=30, what="/metrics")
    produce(
        secured_kafka.endpoints["PLAINTEXT"],
        secured_topics.requests,
        [(key.encode(), request(key), [])],
    )
    exit_code = wait_for_exit(worker)

    assert exit_code != 0
    plaintext = secured_kafka.endpoints["PLAINTEXT"]
    assert_no_secret(
        [token, secured_kafka.scram.password],
        log=worker.log.read_text(),
        metrics=metrics,
        replies=topic_text(plaintext, secured_topics.replies),
        dlq=topic_text(plaintext, secured_topics.dlq),
        doctor=run_cli(worker.env, "doctor"),
    )


def test_working_worker_send_and_doctor_leak_nothing(
    secured_kafka: SecuredBroker,
    airflow3: AirflowServer,
    secured_topics: Topics,
    make_secured_worker: Callable[..., WorkerProcess],
    sasl_env: dict[str, str],
) -> None:
    """Replies, DLQ records, logs, /metrics, send and doctor of a working worker hold no secret."""
    port = procs.free_port()
    worker = make_secured_worker(sasl_env, extra={"TRIGGER_CONSUMER_HTTP_PORT": str(port)})
    plaintext = secured_kafka.endpoints["PLAINTEXT"]
    good, denied = unique_name("good"), unique_name("denied")
    produce(
        plaintext,
        secured_topics.requests,
        [
            (good.encode(), request(good), []),
            (denied.encode(), request(denied, dag_id="not_allowed"), []),
            (b"bad", b"{not json", []),
        ],
    )
    with running(worker):
        read_all(plaintext, secured_topics.replies, at_least=3)
        read_all(plaintext, secured_topics.dlq, at_least=2)
        sent = run_cli(worker.env, "send", "--dag", "devstack_paused", "--wait", "--timeout", "120")
        metrics = metrics_text(port)

    assert '"status": "triggered"' in sent
    doctor = run_cli(worker.env, "doctor")
    assert "✗" not in doctor, doctor
    assert_no_secret(
        [secured_kafka.scram.password, PASSWORD, airflow3.describe()["password"]],
        log=worker.log.read_text(),
        metrics=metrics,
        replies=topic_text(plaintext, secured_topics.replies),
        dlq=topic_text(plaintext, secured_topics.dlq),
        send=sent,
        doctor=doctor,
        doctor_json=run_cli(worker.env, "doctor", "--json"),
    )


def test_send_refused_by_kafka_leaks_nothing(
    secured_kafka: SecuredBroker, secured_topics: Topics, tmp_path: Path
) -> None:
    """``send`` refused by the broker (an untrusted certificate) says why, without the password.

    Its preflight connection stops it before producing (tests/security/test_preflight.py
    covers a wrong SASL password the same way).
    """
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_CONSUMER_")},
        **security_env(secured_kafka, PROTOCOL, MECHANISM, trust=other_ca),
        "TRIGGER_CONSUMER_REQUEST_TOPIC": secured_topics.requests,
    }
    output = run_cli(env, "send", "--dag", "devstack_paused")

    assert "CERTIFICATE_VERIFY_FAILED" in output
    assert not output.endswith("exit 0"), output
    assert_no_secret([secured_kafka.scram.password], send=output)


def test_settings_and_config_errors_hide_secrets(tmp_path: Path) -> None:
    """repr/str/JSON of Settings and the text of a settings error never show a secret."""
    sasl, airflow, token = (unique_name(f"{k}-secret") for k in ("sasl", "airflow", "token"))
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    settings = load_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="user",
        kafka_sasl_password=sasl,
        airflow_username="admin",
        airflow_password=airflow,
        airflow_token_file=str(token_file),
    )
    assert settings.airflow_token is not None
    assert settings.airflow_token.get_secret_value() == token
    with pytest.raises(ConfigError) as refused:
        load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password=sasl)
    with pytest.raises(ConfigError) as bad_value:
        load_settings(airflow_password=airflow, airflow_username="admin", http_port=-1)

    assert_no_secret(
        [sasl, airflow, token],
        repr=repr(settings),
        str=str(settings),
        json=settings.model_dump_json(),
        dump=json.dumps(settings.model_dump(mode="json")),
        missing_user=_exception_text(refused.value),
        bad_value=_exception_text(bad_value.value),
    )


def _exception_text(exc: BaseException) -> str:
    """The exception as it would be printed: message, repr and traceback (chain included)."""
    return f"{exc}\n{exc!r}\n{''.join(traceback.format_exception(exc))}"
