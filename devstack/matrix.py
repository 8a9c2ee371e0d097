"""The version matrix: older Airflow releases and a Kafka 3 broker, for the compatibility smoke.

The suite's stack runs Airflow 3.3 and 2.11 and Kafka 4.4 (``stack.py``). The smoke
(``tests/compat``) starts each release below beside it, one at a time, on ports of its own,
with its metadata in a database of its own on the stack's PostgreSQL (as the stack's own
Airflows), and stops it afterwards. Nothing here is part of the stack's state file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from devstack import procs
from devstack.airflow import AirflowServer
from devstack.airflow_venv import release_venv
from devstack.postgres import PostgresServer

# the newest patch of each older minor series the worker supports (README "Versions"), and
# the day after PyPI received it: its dependencies install as of then (airflow_venv.py)
AIRFLOW_RELEASES = {
    "3.1.8": "2026-03-12T00:00:00Z",
    "3.2.2": "2026-05-30T00:00:00Z",
    "2.10.5": "2025-02-11T00:00:00Z",
}


@dataclass(kw_only=True)
class ReleaseAirflowServer(AirflowServer):
    """An Airflow of an exact release; ``major`` follows from it."""

    release: str

    @property
    def version(self) -> str:
        """The exact Airflow version."""
        return self.release

    def _bin(self) -> Path:
        return install_release(self.release) / "bin"


def start_release(
    release: str, postgres: PostgresServer, home: Path, *, tie_to_parent: bool
) -> ReleaseAirflowServer:
    """Install (once), migrate and start one Airflow release; wait until it serves its DAGs.

    Args:
        release: an exact Airflow release (``3.1.8``).
        postgres: the stack's PostgreSQL; the release keeps its metadata in a database of
            its own there (kept between runs: ``db migrate`` on it is quick).
        home: its ``AIRFLOW_HOME`` (wiped first).
        tie_to_parent: its processes die with this one.

    Returns:
        The running server; stop it with ``stop``.

    Raises:
        StackError: when it does not install or come up.
    """
    database = "compat_airflow_" + release.replace(".", "_")
    postgres.create_database(database)
    shutil.rmtree(home, ignore_errors=True)
    server = ReleaseAirflowServer(
        major=release.split(".", 1)[0],
        home=home,
        port=procs.free_port(),
        database_url=postgres.url(database),
        log_ports=(procs.free_port(), procs.free_port()),
        release=release,
    )
    server.prepare([])
    try:
        server.start(tie_to_parent=tie_to_parent)
    except procs.StackError:
        server.stop()
        raise
    return server


def install_release(release: str) -> Path:
    """Install one older Airflow release (once) with its day's dependencies; return its venv."""
    return release_venv(release, uploaded_before=AIRFLOW_RELEASES[release])
