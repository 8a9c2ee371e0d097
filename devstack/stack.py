"""The whole local stack: start what is missing, remember it in a state file, stop it.

One state file per run dir lets ``python -m devstack down`` (or ``stop-api``) act on a
stack that another process started, and lets pytest reuse a stack that ``make stack-up``
left running. A stack instance stops, on ``close``, only what it started itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from devstack import procs
from devstack.airflow import AirflowServer, new_airflow
from devstack.airflow import venv_dir as airflow_venv
from devstack.kafka import KafkaBroker, start_broker
from devstack.kafka import libs_dir as kafka_libs
from devstack.kafka3 import kafka3_libs
from devstack.matrix import AIRFLOW_RELEASES, install_release
from devstack.paths import run_dir
from devstack.postgres import PostgresServer
from devstack.postgres import bin_dir as postgres_bin
from devstack.prometheus import bin_dir as prometheus_bin

STORE_DATABASE = "trigger_consumer"  # the idempotency store of workers on this stack


def say(message: str) -> None:
    """Progress for humans, on stderr so that stdout stays one JSON document."""
    print(f"devstack: {message}", file=sys.stderr, flush=True)


def prepare() -> None:
    """Install everything the stack needs, in parallel, without starting anything."""
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=4 + len(AIRFLOW_RELEASES)) as pool:
        jobs = [
            pool.submit(_kafka_jars),
            pool.submit(_debian_packages),
            *(pool.submit(airflow_venv, major) for major in ("3", "2")),
            # the compatibility smoke's older releases (tests/compat)
            *(pool.submit(install_release, release) for release in AIRFLOW_RELEASES),
        ]
        for job in jobs:
            job.result()
    say(f"prepared in {time.monotonic() - began:.1f} s")


def _kafka_jars() -> Path:
    """The stack's broker's jars, then Kafka 3's: one Maven at a time on the local repository."""
    kafka_libs()
    return kafka3_libs()


def _debian_packages() -> Path:
    """PostgreSQL, then Prometheus (the monitoring tests'): apt-get installs one at a time."""
    postgres_bin()
    return prometheus_bin()


class Stack:
    """Kafka, PostgreSQL and Airflow 3/2 under one run dir."""

    def __init__(self, home: Path | None = None, *, tie_to_parent: bool = False) -> None:
        """Open the stack kept in ``home`` (default: ``paths.run_dir()``).

        Args:
            home: the run dir holding data, logs and ``stack.json``.
            tie_to_parent: servers this instance starts die with this process (pytest).
        """
        self.home = home or run_dir()
        self.tie_to_parent = tie_to_parent
        self.kafka: KafkaBroker | None = None
        self.postgres: PostgresServer | None = None
        self.airflow: dict[str, AirflowServer] = {}
        self.started: set[str] = set()
        self._load()

    # -- state file -------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.home / "stack.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run dir's lock: one process at a time starts or stops servers."""
        with (self.home / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._load()
                yield
            finally:
                self._save()  # also after a failed start, so that `down` can stop what runs
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> None:
        if not self._state_file.exists():
            return
        state = json.loads(self._state_file.read_text())
        if state.get("kafka"):
            kafka = state["kafka"]
            self.kafka = KafkaBroker(**{**kafka, "work": Path(kafka["work"])})
        if state.get("postgres"):
            pg = state["postgres"]
            self.postgres = PostgresServer(**{**pg, "work": Path(pg["work"])})
        self.airflow = {
            major: AirflowServer(
                **{**server, "home": Path(server["home"]), "log_ports": tuple(server["log_ports"])}
            )
            for major, server in state.get("airflow", {}).items()
        }

    def _save(self) -> None:
        def plain(obj: Any) -> Any:
            return json.loads(json.dumps(asdict(obj), default=str)) if obj else None

        state = {
            "kafka": plain(self.kafka),
            "postgres": plain(self.postgres),
            "airflow": {major: plain(server) for major, server in self.airflow.items()},
        }
        self._state_file.write_text(json.dumps(state, indent=2))

    # -- start ------------------------------------------------------------------------------
    def up(
        self,
        *,
        kafka: bool = True,
        airflow: tuple[str, ...] = (),
        dags: tuple[Path, ...] = (),
        postgres: bool = False,
    ) -> dict[str, Any]:
        """Start whatever of Kafka, PostgreSQL and the named Airflow versions is not running yet.

        PostgreSQL also holds the workers' shared idempotency store (``STORE_DATABASE``),
        whose URL ``describe`` names as ``postgres.store_url``.

        Args:
            kafka: start the Kafka broker.
            airflow: Airflow major versions to start ("3", "2").
            dags: extra DAG folders to serve on every Airflow started.
            postgres: start PostgreSQL and its store database even without Airflow.

        Returns:
            The stack description (see ``describe``).
        """
        with self.locked():
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=2) as pool:
                kafka_job = pool.submit(self._ensure_kafka) if kafka else None
                if airflow or postgres:
                    self._ensure_postgres()
                    self._ensure_store_database()
                    list(pool.map(lambda major: self._ensure_airflow(major, list(dags)), airflow))
                if kafka_job is not None:
                    kafka_job.result()
            say(f"stack ready in {time.monotonic() - started:.1f} s")
            return self.describe()

    def _ensure_kafka(self) -> None:
        if self.kafka is not None and self.kafka.pid is not None and procs.alive(self.kafka.pid):
            return
        begin = time.monotonic()
        if self.kafka is not None:
            say("Kafka is down; starting it again with its data")
            try:
                self.kafka.start(tie_to_parent=self.tie_to_parent)
            except procs.StackError as exc:
                say(f"restart failed ({exc}); starting a fresh broker")
                self.kafka.stop()
                self.kafka = None
        if self.kafka is None:
            say("starting Kafka (jars are resolved by Maven on first use)")
            self.kafka = start_broker(self.home / "kafka", tie_to_parent=self.tie_to_parent)
        self.started.add("kafka")
        say(f"Kafka ready at {self.kafka.bootstrap_servers} in {time.monotonic() - begin:.1f} s")

    def _ensure_postgres(self) -> None:
        if self.postgres is not None and self.postgres.pid and procs.alive(self.postgres.pid):
            return
        if self.postgres is None:
            self.postgres = PostgresServer(work=self.home / "postgres", port=procs.free_port())
        self.postgres.start(tie_to_parent=self.tie_to_parent)
        self.started.add("postgres")
        say(f"PostgreSQL ready on 127.0.0.1:{self.postgres.port}")

    def _ensure_store_database(self) -> None:
        """Create the store database on a running PostgreSQL (also one started earlier)."""
        if self.postgres is None:
            raise procs.StackError("PostgreSQL must run before its store database")
        self.postgres.create_database(STORE_DATABASE)

    def _ensure_airflow(self, major: str, dags: list[Path]) -> None:
        server = self.airflow.get(major)
        if server is not None and server.running():
            for folder in dags:
                server.link_dags(folder)
            return
        if self.postgres is None:
            raise procs.StackError("PostgreSQL must run before Airflow")
        begin = time.monotonic()
        database = f"airflow{major}"
        self.postgres.create_database(database)
        if server is None:
            server = new_airflow(major, self.home / f"airflow{major}", self.postgres.url(database))
            self.airflow[major] = server
        else:
            # a process died: restart all of them on the same ports, so that URLs already
            # handed out (fixtures, running workers) stay valid
            say(f"Airflow {server.version} is incomplete; restarting it on {server.url}")
            server.stop()
        say(f"preparing Airflow {server.version} (venv install on first use, db migrate)")
        server.prepare(dags)
        say(f"starting Airflow {server.version}")
        server.start(tie_to_parent=self.tie_to_parent)
        self.started.add(f"airflow{major}")
        say(f"Airflow {server.version} ready at {server.url} in {time.monotonic() - begin:.1f} s")

    # -- describe and stop ------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """How to reach the running servers: the JSON document ``up`` prints."""
        doc: dict[str, Any] = {}
        if self.kafka is not None:
            doc["kafka"] = {"bootstrap_servers": self.kafka.bootstrap_servers}
        doc["airflow"] = {major: server.describe() for major, server in self.airflow.items()}
        if self.postgres is not None:
            doc["postgres"] = {
                "url": self.postgres.url("postgres", driver="postgresql"),
                "store_url": self.postgres.url(STORE_DATABASE, driver="postgresql"),
            }
        doc["run_dir"] = str(self.home)
        return doc

    def airflow_server(self, major: str) -> AirflowServer:
        """The running Airflow of that major version.

        Raises:
            StackError: when it is not part of this stack.
        """
        server = self.airflow.get(major)
        if server is None:
            raise procs.StackError(f"Airflow {major} is not running; `up --airflow {major}` first")
        return server

    def _tied(self, component: str) -> bool:
        """Whether a restarted server must die with this process: only if this process started it.

        A shared stack (``make stack-up``) must outlive a test run that restarted its servers.
        """
        return self.tie_to_parent and component in self.started

    def stop_api(self, major: str) -> None:
        """Stop only that Airflow's API server (for outage tests)."""
        with self.locked():
            self.airflow_server(major).stop_api()

    def start_api(self, major: str) -> None:
        """Start that Airflow's API server again on the same URL."""
        with self.locked():
            server = self.airflow_server(major)
            if "api" not in server.pids or not procs.alive(server.pids["api"]):
                server.start_api(tie_to_parent=self._tied(f"airflow{major}"))

    def restart_kafka(self) -> None:
        """Restart the broker on the same port with its data kept."""
        with self.locked():
            if self.kafka is None:
                raise procs.StackError("Kafka is not running")
            self.kafka.restart(tie_to_parent=self._tied("kafka"))

    def down(self, *, only_started: bool = False) -> None:
        """Stop the servers (Airflow first: it needs the database to shut down cleanly).

        Args:
            only_started: stop only what this instance started (pytest on a shared stack).
        """
        with self.locked():
            for major in list(self.airflow):
                if not only_started or f"airflow{major}" in self.started:
                    self.airflow.pop(major).stop()
            stop_postgres = not only_started or "postgres" in self.started
            if self.postgres is not None and stop_postgres and not self.airflow:
                self.postgres.stop()
                self.postgres = None
            if self.kafka is not None and (not only_started or "kafka" in self.started):
                self.kafka.stop()
                self.kafka = None
            self.started.clear()
