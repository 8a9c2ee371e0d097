"""The environment of a worker pointed at the local stack: one definition for demo, tests, bench."""

from __future__ import annotations

import os
from pathlib import Path

from devstack.airflow import USERNAME, AirflowServer

PREFIX = "TRIGGER_CONSUMER_"


def worker_environment(
    *,
    bootstrap: str,
    airflow: AirflowServer,
    store: Path,
    password: str | None = None,
    **settings: str,
) -> dict[str, str]:
    """The current environment minus any ``TRIGGER_CONSUMER_*``, plus the stack's settings.

    Args:
        bootstrap: the Kafka bootstrap servers.
        airflow: the Airflow the worker triggers.
        store: the idempotency store's SQLite file.
        password: an Airflow password other than the right one.
        settings: further settings by field name (``request_topic="..."``).

    Returns:
        The worker's environment.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(
        {
            f"{PREFIX}KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            f"{PREFIX}AIRFLOW_URL": airflow.url,
            f"{PREFIX}AIRFLOW_USERNAME": USERNAME,
            f"{PREFIX}AIRFLOW_PASSWORD": password or airflow.describe()["password"],
            f"{PREFIX}DAG_ALLOWLIST": "devstack_*",
            f"{PREFIX}STORE_URL": f"sqlite:///{store}",
            f"{PREFIX}LOG_FORMAT": "json",
        }
    )
    env.update({f"{PREFIX}{name.upper()}": value for name, value in settings.items()})
    return env
