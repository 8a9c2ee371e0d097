"""Session fixtures over ``devstack``: real Kafka and Airflow 3/2 servers (STYLE §12).

A server that cannot be started fails the tests that need it; nothing is ever skipped.
A stack already running in the default run dir (``make stack-up``) is reused and left
running; servers this session starts die with it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from devstack import Stack
from devstack.airflow import AirflowServer
from tests.waiting import wait_until

EXTERNAL_KAFKA_ENV = "TRIGGER_CONSUMER_TEST_KAFKA_BOOTSTRAP"


@dataclass(frozen=True)
class KafkaCluster:
    """How tests reach the broker; ``stack`` is None for an external cluster."""

    bootstrap_servers: str
    stack: Stack | None

    def restart(self) -> None:
        """Restart the broker with its data kept (only the devstack broker can)."""
        if self.stack is None:
            raise AssertionError(f"restarting needs the devstack broker, not {EXTERNAL_KAFKA_ENV}")
        self.stack.restart_kafka()


def unique_name(prefix: str) -> str:
    """A name no other test uses: topics, groups, keys."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The local stack; stops, at the end, only what this session started."""
    local = Stack(tie_to_parent=True)
    yield local
    local.down(only_started=True)


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> KafkaCluster:
    """A real Kafka broker: ``TRIGGER_CONSUMER_TEST_KAFKA_BOOTSTRAP`` or the devstack one."""
    external = os.environ.get(EXTERNAL_KAFKA_ENV)
    if external:
        return KafkaCluster(bootstrap_servers=external, stack=None)
    local: Stack = request.getfixturevalue("stack")
    doc = local.up(kafka=True)
    return KafkaCluster(bootstrap_servers=doc["kafka"]["bootstrap_servers"], stack=local)


@pytest.fixture(scope="session")
def airflow3(stack: Stack) -> AirflowServer:
    """A real Airflow 3 (api-server, scheduler, dag-processor) on PostgreSQL."""
    stack.up(kafka=False, airflow=("3",))
    return stack.airflow_server("3")


@pytest.fixture(scope="session")
def airflow2(stack: Stack) -> AirflowServer:
    """A real Airflow 2 (webserver, scheduler) on PostgreSQL."""
    stack.up(kafka=False, airflow=("2",))
    return stack.airflow_server("2")


@pytest.fixture(scope="session")
def postgres_store_url(stack: Stack) -> str:
    """The devstack PostgreSQL's store database URL (``postgres.store_url`` of ``up``)."""
    doc = stack.up(kafka=False, postgres=True)
    url: str = doc["postgres"]["store_url"]
    return url


@pytest.fixture
def new_database(postgres_store_url: str) -> Iterator[str]:
    """A fresh, empty database on the devstack PostgreSQL, dropped afterwards."""
    import psycopg  # noqa: PLC0415 -- only PostgreSQL-store tests need the driver

    name = unique_name("t").replace("-", "_")
    with psycopg.connect(postgres_store_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_store_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_store_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["3", "2"], ids=["airflow3", "airflow2"])
def airflow(request: pytest.FixtureRequest) -> AirflowServer:
    """Each real Airflow in turn: the test runs once per major version."""
    server: AirflowServer = request.getfixturevalue(f"airflow{request.param}")
    return server


@pytest.fixture
def new_topic(kafka: KafkaCluster) -> Callable[..., str]:
    """Factory: create a uniquely named topic with N partitions and return its name."""

    def create(
        partitions: int = 1, prefix: str = "test", config: dict[str, str] | None = None
    ) -> str:
        name = unique_name(prefix)
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        try:
            admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs=config or {},
                    )
                ]
            )
            wait_until(
                lambda: len(admin.describe_topics([name])[0]["partitions"]) == partitions,
                timeout=30,
                what=f"topic {name} with {partitions} partitions",
            )
        finally:
            admin.close()
        return name

    return create
