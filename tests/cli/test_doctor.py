"""`trigger-consumer doctor` run as a subprocess against the real Kafka and Airflow servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster, unique_name

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "TRIGGER_CONSUMER_"
ALL_PASS = "devstack_plain,devstack_param*"
# seconds a failing doctor may take: short call timeouts, no retries
QUICK = 20.0


class DoctorRun:
    """The settings of one doctor run on the real stack, as environment variables."""

    def __init__(
        self,
        kafka: KafkaCluster,
        airflow: AirflowServer,
        new_topic: Callable[..., str],
        tmp_path: Path,
    ) -> None:
        """Create fresh topics and a temporary store for one test.

        Args:
            kafka: the broker.
            airflow: the Airflow to check.
            new_topic: the topic factory.
            tmp_path: where the store goes.
        """
        described = airflow.describe()
        self.settings = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_GROUP_ID": unique_name("doctor-group"),
            "REQUEST_TOPIC": new_topic(partitions=2, prefix="doctor-requests"),
            "REPLY_TOPIC": new_topic(prefix="doctor-replies"),
            "DLQ_TOPIC": new_topic(prefix="doctor-dlq"),
            "AIRFLOW_URL": airflow.url,
            "AIRFLOW_USERNAME": described["username"],
            "AIRFLOW_PASSWORD": described["password"],
            "DAG_ALLOWLIST": ALL_PASS,
            "STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        }

    def doctor(self, *args: str, **changes: str) -> subprocess.CompletedProcess[str]:
        """Run ``doctor`` with these settings, ``changes`` overriding some.

        Args:
            args: extra flags.
            changes: settings to replace, by name without the prefix.

        Returns:
            The finished process.
        """
        env = {name: value for name, value in os.environ.items() if not name.startswith(PREFIX)}
        env.update({PREFIX + name: value for name, value in {**self.settings, **changes}.items()})
        return subprocess.run(
            [sys.executable, "-m", "consumer", "doctor", "--timeout", "3", *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )


@pytest.fixture
def stack3(
    kafka: KafkaCluster, airflow3: AirflowServer, new_topic: Callable[..., str], tmp_path: Path
) -> DoctorRun:
    """Doctor settings on Kafka and Airflow 3."""
    return DoctorRun(kafka, airflow3, new_topic, tmp_path)


def _lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each output line by its check name."""
    lines = {}
    for line in result.stdout.splitlines():
        name = line[2:].split(": ", 1)[0]
        lines[name] = line
    return lines


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("major", ["3", "2"])
def test_every_check_passes_on_the_stack(
    major: str,
    kafka: KafkaCluster,
    new_topic: Callable[..., str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """With the devstack topics, DAGs and a temporary store every line is ✓ and doctor exits 0."""
    airflow: AirflowServer = request.getfixturevalue(f"airflow{major}")
    result = DoctorRun(kafka, airflow, new_topic, tmp_path).doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _lines(result)
    assert set(lines) == {
        "kafka",
        "request topic",
        "reply topic",
        "DLQ topic",
        "consumer group",
        "airflow",
        "airflow credentials",
        "DAG allow-list 'devstack_plain'",
        "DAG allow-list 'devstack_param*'",
        "paused DAGs",
        "store",
        "deferred",
    }
    # another engineer's test may pause a devstack DAG: that is a warning, never a failure
    assert all(line.startswith("✓") for name, line in lines.items() if name != "paused DAGs")
    assert "with 2 partition(s)" in lines["request topic"]
    assert f"Airflow {airflow.version}" in lines["airflow"]
    assert "no committed offsets yet" in lines["consumer group"]


def test_a_wrong_password_fails_without_showing_it(stack3: DoctorRun) -> None:
    """A wrong password fails the credentials check, names the settings, and is never printed."""
    password = f"wrong-{uuid.uuid4().hex}"
    result = stack3.doctor(AIRFLOW_PASSWORD=password)
    assert result.returncode == 1
    line = _lines(result)["airflow credentials"]
    assert line.startswith("✗")
    assert "TRIGGER_CONSUMER_AIRFLOW_PASSWORD" in line
    assert password not in result.stdout + result.stderr


def test_a_wrong_password_fails_on_airflow2(
    kafka: KafkaCluster, airflow2: AirflowServer, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Airflow 2's basic auth refusal (403) fails the credentials check without the secret."""
    password = f"wrong-{uuid.uuid4().hex}"
    result = DoctorRun(kafka, airflow2, new_topic, tmp_path).doctor(AIRFLOW_PASSWORD=password)
    assert result.returncode == 1
    assert _lines(result)["airflow credentials"].startswith("✗")
    assert password not in result.stdout + result.stderr


def test_a_missing_topic_fails_naming_it(stack3: DoctorRun) -> None:
    """A DLQ topic that does not exist fails, naming the topic and its setting."""
    missing = unique_name("doctor-missing")
    result = stack3.doctor(DLQ_TOPIC=missing)
    assert result.returncode == 1
    line = _lines(result)["DLQ topic"]
    assert line.startswith(f"✗ DLQ topic: topic {missing} does not exist")
    assert "TRIGGER_CONSUMER_DLQ_TOPIC" in line


def test_an_unreachable_airflow_fails_quickly(stack3: DoctorRun) -> None:
    """A closed port fails the airflow check within seconds and skips what needs Airflow."""
    started = time.monotonic()
    result = stack3.doctor(AIRFLOW_URL=f"http://127.0.0.1:{_closed_port()}")
    assert time.monotonic() - started < QUICK
    assert result.returncode == 1
    lines = _lines(result)
    assert lines["airflow"].startswith("✗")
    assert "TRIGGER_CONSUMER_AIRFLOW_URL" in lines["airflow"]
    assert lines["airflow credentials"].startswith("✗ airflow credentials: not checked")
    assert lines["kafka"].startswith("✓")


def test_an_unreachable_kafka_fails_quickly(stack3: DoctorRun) -> None:
    """A closed Kafka port fails the kafka check within seconds, naming the bootstrap setting."""
    started = time.monotonic()
    result = stack3.doctor(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{_closed_port()}")
    assert time.monotonic() - started < QUICK
    assert result.returncode == 1
    lines = _lines(result)
    assert lines["kafka"].startswith("✗")
    assert "TRIGGER_CONSUMER_KAFKA_BOOTSTRAP_SERVERS" in lines["kafka"]
    assert lines["request topic"].startswith("✗ request topic: not checked")


def test_a_pattern_matching_no_dag_fails(stack3: DoctorRun) -> None:
    """An allow-list pattern that matches no DAG fails while the other pattern passes."""
    result = stack3.doctor(DAG_ALLOWLIST="devstack_plain,no_such_dag_*")
    assert result.returncode == 1
    lines = _lines(result)
    assert lines["DAG allow-list 'devstack_plain'"].startswith("✓")
    failed = lines["DAG allow-list 'no_such_dag_*'"]
    assert failed.startswith("✗")
    assert "TRIGGER_CONSUMER_DAG_ALLOWLIST" in failed


def test_a_paused_dag_is_a_warning_and_still_exits_0(stack3: DoctorRun) -> None:
    """The paused devstack DAG gives a ⚠ line; doctor still exits 0."""
    result = stack3.doctor(DAG_ALLOWLIST="devstack_paused")
    assert result.returncode == 0, result.stdout
    assert _lines(result)["paused DAGs"].startswith("⚠ paused DAGs: 1 of 1 allowed DAG(s) paused")


def test_json_prints_one_object_per_check(stack3: DoctorRun) -> None:
    """--json prints a JSON list of {name, ok, detail, remedy, warning}."""
    result = stack3.doctor("--json", DLQ_TOPIC=unique_name("doctor-missing"))
    assert result.returncode == 1
    checks = json.loads(result.stdout)
    assert set(checks[0]) == {"name", "ok", "detail", "remedy", "warning"}
    by_name = {check["name"]: check for check in checks}
    assert by_name["DLQ topic"]["ok"] is False
    assert by_name["kafka"]["ok"] is True


def test_a_setting_error_exits_2(stack3: DoctorRun) -> None:
    """An invalid setting is printed, naming the variable, and doctor exits 2."""
    result = stack3.doctor(AIRFLOW_API_VERSION="v9")
    assert result.returncode == 2
    assert "TRIGGER_CONSUMER_AIRFLOW_API_VERSION" in result.stderr
    assert result.stdout == ""


def test_a_config_file_is_read(stack3: DoctorRun, tmp_path: Path) -> None:
    """--config reads the settings from a TOML file (here the allow-list)."""
    config = tmp_path / "doctor.toml"
    config.write_text('dag_allowlist = ["no_such_dag_from_file"]\n', encoding="utf-8")
    stack3.settings.pop("DAG_ALLOWLIST")
    result = stack3.doctor("--config", str(config))
    assert result.returncode == 1
    assert _lines(result)["DAG allow-list 'no_such_dag_from_file'"].startswith("✗")
