"""Tests of the deployment files, Dockerfile and compose.yaml, read without a Docker engine."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]

from consumer.settings import Settings, known_variables
from devstack.airflow import VERSIONS as AIRFLOW_VERSIONS
from devstack.kafka import KAFKA_VERSION

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
SETTING_NAME = re.compile(r"\bTRIGGER_CONSUMER_[A-Z0-9_]+\b")
TOPICS = ("dag-trigger-requests", "dag-trigger-replies", "dag-trigger-dlq")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions after the last FROM: what the runtime image is made of."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def compose() -> dict[str, Any]:
    """compose.yaml, parsed."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whether written as a mapping or a list."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {name: str(value) for name, value in environment.items()}


def test_every_trigger_consumer_variable_in_the_deploy_files_is_a_setting() -> None:
    """No TRIGGER_CONSUMER_* name in Dockerfile or compose.yaml would fail start-up as unknown."""
    names = SETTING_NAME.findall(DOCKERFILE.read_text()) + SETTING_NAME.findall(COMPOSE.read_text())

    assert names, "the deploy files set no TRIGGER_CONSUMER_* variable at all"
    assert set(names) - known_variables() == set()


def test_every_dockerfile_env_is_a_setting_or_a_python_variable() -> None:
    """Each ENV of the runtime image is a known setting or a Python/pip runtime switch."""
    variables = [
        assignment.partition("=")[0]
        for keyword, arguments in final_stage()
        if keyword == "ENV"
        for assignment in shlex.split(arguments)
    ]

    ours = {name for name in variables if name.startswith("TRIGGER_CONSUMER_")}
    assert ours <= known_variables()
    assert {name for name in variables if name not in ours} <= {
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PIP_NO_CACHE_DIR",
        "PIP_DISABLE_PIP_VERSION_CHECK",
    }


def test_dockerfile_bakes_in_no_secret() -> None:
    """No password, token or SASL secret is set in the image; they come at run time."""
    text = DOCKERFILE.read_text()

    for secret in ("PASSWORD", "TOKEN"):
        assert not re.search(rf"\bENV\b[^\n]*TRIGGER_CONSUMER_\w*{secret}", text)
    assert "ARG " not in text


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    """A builder stage makes the wheel; the runtime stage is python:3.11-slim."""
    froms = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]

    assert len(froms) >= 2
    assert froms[0].endswith("AS builder")
    assert froms[-1] == "python:3.11-slim"
    assert any(
        keyword == "RUN" and "pip wheel" in arguments
        for keyword, arguments in dockerfile_instructions()
    )


def test_dockerfile_runs_as_a_non_root_user() -> None:
    """The runtime image's last USER is neither root nor uid 0."""
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]

    assert users, "the runtime stage sets no USER"
    user = users[-1].partition(":")[0]
    assert user not in {"root", "0", ""}


def test_dockerfile_health_check_probes_healthz_with_python() -> None:
    """HEALTHCHECK calls /healthz on 127.0.0.1:9464 with Python's urllib (slim has no curl)."""
    checks = [arguments for keyword, arguments in final_stage() if keyword == "HEALTHCHECK"]

    assert len(checks) == 1
    command = json.loads(checks[0].partition("CMD ")[2])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")
    assert "urllib.request" in command[2]
    assert "http://127.0.0.1:" in command[2]
    assert "'9464'" in command[2]
    assert "/healthz" in command[2]


def test_dockerfile_entrypoint_runs_trigger_consumer() -> None:
    """ENTRYPOINT is the trigger-consumer script, CMD its `run` command, 9464 exposed."""
    stage = dict(final_stage())

    assert json.loads(stage["ENTRYPOINT"]) == ["trigger-consumer"]
    assert json.loads(stage["CMD"]) == ["run"]
    assert stage["EXPOSE"] == "9464"


def test_compose_worker_builds_from_the_dockerfile() -> None:
    """The worker service is built from this repository's Dockerfile."""
    build = compose()["services"]["worker"]["build"]

    assert (ROOT / build["context"]).resolve() == ROOT
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


def test_compose_worker_environment_is_valid_settings() -> None:
    """The worker's TRIGGER_CONSUMER_* environment builds a Settings that can run."""
    environment = service_environment(compose()["services"]["worker"])
    prefix = "TRIGGER_CONSUMER_"
    values = {
        name.removeprefix(prefix).lower(): value
        for name, value in environment.items()
        if not name.endswith("_FILE")  # secrets mounted at run time; checked on their own
    }

    settings = Settings.model_validate(values)

    assert settings.dag_allowlist == ("devstack_*",)
    assert settings.kafka_bootstrap_servers == "kafka:19092"
    assert settings.airflow_url == "http://airflow:8080"
    assert settings.store_url.startswith("postgresql://")


def test_compose_runs_three_worker_replicas_on_one_postgresql_store() -> None:
    """Three replicas share one PostgreSQL store; its password comes from the same secret file."""
    document = compose()
    services = document["services"]
    worker, postgres = services["worker"], services["postgres"]
    environment = service_environment(worker)
    database = service_environment(postgres)
    store = urlsplit(environment["TRIGGER_CONSUMER_STORE_URL"])

    assert worker["deploy"]["replicas"] == 3
    assert store.scheme == "postgresql"
    assert store.hostname == "postgres"
    assert store.port in (None, 5432)
    assert store.password is None  # never in the URL
    assert store.username == database["POSTGRES_USER"]
    assert store.path == f"/{database['POSTGRES_DB']}"
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in postgres
    # one secret, read by the database as its password and by each replica as the store's
    secret_path = "/run/secrets/store-password"
    assert environment["TRIGGER_CONSUMER_STORE_PASSWORD_FILE"] == secret_path
    assert database["POSTGRES_PASSWORD_FILE"] == secret_path
    assert "store-password" in worker["secrets"]
    assert "store-password" in postgres["secrets"]
    source = document["secrets"]["store-password"]["file"]
    default = re.fullmatch(r"\$\{STORE_PASSWORD_FILE:-(.+)\}", source)
    assert default is not None and (ROOT / default.group(1)).is_file()
    # three replicas cannot share one host port
    (ports,) = worker["ports"]
    first, _, last = ports.partition(":")[0].partition("-")
    assert int(last) - int(first) + 1 == 3


def test_compose_worker_waits_for_healthy_dependencies() -> None:
    """The worker starts after topics exist and Airflow is healthy; each awaited check exists."""
    services = compose()["services"]
    depends_on = services["worker"]["depends_on"]

    assert depends_on["kafka-init"]["condition"] == "service_completed_successfully"
    assert depends_on["airflow"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} awaits {dependency}"


def test_compose_kafka_is_single_node_kraft_on_the_tested_version() -> None:
    """Kafka runs the official image in KRaft mode, on the version devstack tests against."""
    kafka = compose()["services"]["kafka"]
    environment = service_environment(kafka)

    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"


@pytest.mark.parametrize("topic", TOPICS)
def test_compose_creates_the_default_topics(topic: str) -> None:
    """kafka-init creates each topic the worker uses by default."""
    init = compose()["services"]["kafka-init"]
    script = " ".join(init["command"])
    defaults = {
        Settings.model_fields[name].default
        for name in ("request_topic", "reply_topic", "dlq_topic")
    }

    assert set(TOPICS) == defaults
    assert topic in script
    assert "kafka-topics.sh" in script
    assert "--if-not-exists" in script


def test_compose_airflow_has_real_credentials_and_the_devstack_dags() -> None:
    """Airflow 3 runs standalone with a SimpleAuthManager user and password the worker uses."""
    document = compose()
    airflow = document["services"]["airflow"]
    environment = service_environment(airflow)
    worker = service_environment(document["services"]["worker"])

    assert airflow["image"] == f"apache/airflow:{AIRFLOW_VERSIONS['3']}"
    assert airflow["command"] == "standalone"
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    target = environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    (config,) = (c for c in airflow["configs"] if c["target"] == target)
    passwords = document["configs"][config["source"]]["content"]
    assert json.loads(passwords) == {"admin": worker["TRIGGER_CONSUMER_AIRFLOW_PASSWORD"]}
    assert worker["TRIGGER_CONSUMER_AIRFLOW_USERNAME"] == "admin"
    assert "./devstack/dags:/opt/airflow/dags:ro" in airflow["volumes"]
    assert any((ROOT / "devstack" / "dags").glob("devstack_*.py"))
