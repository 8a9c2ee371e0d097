"""Fixtures for the security tests: a secured broker of their own and clients/workers on it.

The secured broker is a second broker (own work dir and ports) started once per session;
the shared PLAINTEXT broker of the other tests is never touched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from consumer.kafka_io.security import connection_options
from consumer.settings import ENV_PREFIX, Settings
from devstack.airflow import AirflowServer
from devstack.kafka_security import SecuredBroker, start_secured_broker
from devstack.paths import run_dir
from tests.conftest import unique_name
from tests.scenarios.harness import Topics, WorkerProcess, running, worker_env
from tests.waiting import wait_until


@pytest.fixture(scope="session")
def secured_kafka() -> Iterator[SecuredBroker]:
    """A broker with PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL listeners, stopped at the end."""
    # a directory of this session's own, under the run dir next to the shared broker's
    work = run_dir() / f"kafka-secured-{os.getpid()}"
    broker = start_secured_broker(work, tie_to_parent=True)
    yield broker
    broker.stop()
    shutil.rmtree(work, ignore_errors=True)


# Which CA a client trusts: the broker's own, the system's (no CA file), or another file.
Trust = Literal["broker", "system"] | Path


def client_options(
    broker: SecuredBroker,
    protocol: str,
    mechanism: str | None = None,
    *,
    password: str | None = None,
    trust: Trust = "broker",
) -> dict[str, Any]:
    """kafka-python security arguments to reach ``broker`` over ``protocol``.

    Built by the product's own mapping (``connection_options``) from the same settings the
    worker gets (``security_env``), so tests and worker always connect alike.

    Returns:
        Keyword arguments for ``KafkaConsumer``/``KafkaProducer``/``KafkaAdminClient``,
        without ``bootstrap_servers`` (that is ``broker.endpoints[protocol]``).
    """
    settings = security_settings(broker, protocol, mechanism, password=password, trust=trust)
    options = connection_options(settings)
    del options["bootstrap_servers"]
    return options


def security_settings(
    broker: SecuredBroker,
    protocol: str,
    mechanism: str | None = None,
    *,
    password: str | None = None,
    trust: Trust = "broker",
) -> Settings:
    """The worker's ``Settings`` for ``security_env`` (same arguments), bootstrap included."""
    env = security_env(broker, protocol, mechanism, password=password, trust=trust)
    return Settings(**{name.removeprefix(ENV_PREFIX).lower(): value for name, value in env.items()})


def security_env(
    broker: SecuredBroker,
    protocol: str,
    mechanism: str | None = None,
    *,
    password: str | None = None,
    trust: Trust = "broker",
) -> dict[str, str]:
    """The worker's and CLI's ``TRIGGER_CONSUMER_KAFKA_*`` variables, as ``client_options``.

    Args:
        broker: the secured broker.
        protocol: one of its listeners' security protocols.
        mechanism: the SASL mechanism (SASL protocols only).
        password: a SASL password other than the right one.
        trust: the CA the client trusts (TLS protocols only).

    Returns:
        Environment variables, bootstrap servers included.
    """
    env = {
        "TRIGGER_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": broker.endpoints[protocol],
        "TRIGGER_CONSUMER_KAFKA_SECURITY_PROTOCOL": protocol,
    }
    cafile = _cafile(broker, trust)
    if protocol.endswith("SSL") and cafile is not None:
        env["TRIGGER_CONSUMER_KAFKA_SSL_CAFILE"] = str(cafile)
    if mechanism is not None:
        user = broker.credentials(mechanism)
        env["TRIGGER_CONSUMER_KAFKA_SASL_MECHANISM"] = mechanism
        env["TRIGGER_CONSUMER_KAFKA_SASL_USERNAME"] = user.username
        env["TRIGGER_CONSUMER_KAFKA_SASL_PASSWORD"] = password or user.password
    return env


def _cafile(broker: SecuredBroker, trust: Trust) -> Path | None:
    if trust == "system":
        return None
    return broker.ca_file if trust == "broker" else Path(trust)


@pytest.fixture
def secured_topics(secured_kafka: SecuredBroker) -> Topics:
    """Request, reply and dead-letter topics on the secured broker, and a group of their own."""
    return create_topics(secured_kafka)


def create_topics(broker: SecuredBroker) -> Topics:
    """Create request, reply and dead-letter topics with unique names, and name a group.

    They are created through the PLAINTEXT listener, which the tests also use to look at
    what was (or was not) written.

    Returns:
        The names, once the broker describes every topic with its partition.
    """
    names = Topics(
        requests=unique_name("sec-requests"),
        replies=unique_name("sec-replies"),
        dlq=unique_name("sec-dlq"),
        group=unique_name("sec-group"),
    )
    topics = [names.requests, names.replies, names.dlq]
    admin = KafkaAdminClient(bootstrap_servers=broker.endpoints["PLAINTEXT"])
    try:
        admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in topics])
        wait_until(
            lambda: all(d["partitions"] for d in admin.describe_topics(topics)),
            timeout=30,
            what=f"topics {topics}",
        )
    finally:
        admin.close()
    return names


@pytest.fixture
def make_secured_worker(
    secured_kafka: SecuredBroker,
    airflow3: AirflowServer,
    secured_topics: Topics,
    tmp_path: Path,
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory of worker processes on the secured broker (``extra``: more variables)."""
    made: list[WorkerProcess] = []

    def make(
        security: dict[str, str],
        *,
        name: str = "worker",
        airflow_password: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> WorkerProcess:
        env = worker_env(
            bootstrap=security["TRIGGER_CONSUMER_KAFKA_BOOTSTRAP_SERVERS"],
            airflow=airflow3,
            topics=secured_topics,
            store=tmp_path / f"{name}-store.db",
            password=airflow_password,
            extra={**security, **(extra or {})},
        )
        worker = WorkerProcess(env=env, log=tmp_path / f"{name}.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


# every security protocol the worker supports (spec §5), with the SASL mechanism it uses
LISTENERS = [
    ("PLAINTEXT", None),
    ("SSL", None),
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
]


def listener_id(listener: tuple[str, str | None]) -> str:
    """A test id like ``SASL_SSL-SCRAM-SHA-256``."""
    protocol, mechanism = listener
    return protocol if mechanism is None else f"{protocol}-{mechanism}"


@dataclass
class ListenerWorker:
    """A running worker that reaches the secured broker over one listener.

    Attributes:
        protocol: the listener's security protocol.
        mechanism: its SASL mechanism, None without SASL.
        bootstrap: the listener's ``host:port``.
        options: kafka-python arguments to reach the listener, without the bootstrap.
        topics: the worker's own topics and group.
        worker: the worker; its ``env`` also configures ``send``, ``replay`` and ``doctor``.
    """

    protocol: str
    mechanism: str | None
    bootstrap: str
    options: dict[str, Any]
    topics: Topics
    worker: WorkerProcess


@pytest.fixture(scope="module", params=LISTENERS, ids=listener_id)
def listener_worker(
    request: pytest.FixtureRequest,
    secured_kafka: SecuredBroker,
    airflow3: AirflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ListenerWorker]:
    """One worker per listener, shared by the module's tests of that listener.

    Module scope with parameters: pytest runs every test of one listener before the next
    listener's worker starts, so each protocol costs one worker start.
    """
    protocol, mechanism = request.param
    topics = create_topics(secured_kafka)
    folder = tmp_path_factory.mktemp(listener_id(request.param))
    env = worker_env(
        bootstrap=secured_kafka.endpoints[protocol],
        airflow=airflow3,
        topics=topics,
        store=folder / "store.db",
        extra=security_env(secured_kafka, protocol, mechanism),
    )
    with running(WorkerProcess(env=env, log=folder / "worker.log")) as worker:
        yield ListenerWorker(
            protocol=protocol,
            mechanism=mechanism,
            bootstrap=secured_kafka.endpoints[protocol],
            options=client_options(secured_kafka, protocol, mechanism),
            topics=topics,
            worker=worker,
        )
