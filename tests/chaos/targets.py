"""Targets: what the nemesis acts on besides replicas and the broker.

- ``AirflowPath``: the trial's own Airflow 3 API server (a second api-server on the shared
  home and database, so stopping it disturbs no other test) behind a delay proxy (a slow
  Airflow) behind the fault proxy (503 on trigger POSTs, a lost POST response). Workers
  talk to ``url``; runs are made in the real Airflow's database either way.
- ``PostgresFaults``/``SqliteFaults``: the idempotency store locked by a side connection,
  or (PostgreSQL) turned read-only with its sessions terminated.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psycopg

from consumer.store.postgres_schema import TABLE
from devstack import procs
from devstack.airflow import AirflowServer, venv_dir
from tests.faults.delay_proxy import DelayProxy
from tests.faults.proxy import FaultProxy
from tests.waiting import wait_until

API_ENV = {"AIRFLOW__API__WORKERS": "1"}  # one process: the machine is small and shared
API_START_TIMEOUT = 180.0


@dataclass
class AirflowPath:
    """Worker → fault proxy → delay proxy → the trial's own Airflow 3 API server."""

    server: AirflowServer
    slow: DelayProxy
    proxy: FaultProxy

    @classmethod
    def open(cls, shared: AirflowServer) -> AirflowPath:
        """Start a second API server of ``shared``'s Airflow 3 and the two proxies before it."""
        server = shared.start_extra_api(API_ENV, tie_to_parent=True)
        slow = DelayProxy(("127.0.0.1", server.port))
        proxy = FaultProxy(slow.url)
        # a stopped API server breaks forwarded calls mid-way: the worker sees that, and
        # the proxy's default handler would print a traceback for each (as faults/server.py)
        proxy._httpd.handle_error = lambda *_: None  # type: ignore[method-assign]
        return cls(server=server, slow=slow, proxy=proxy)

    @property
    def url(self) -> str:
        """Where workers reach Airflow."""
        return self.proxy.url

    def stop_api(self) -> None:
        """Stop the API server (scheduler and runs are the shared Airflow's: untouched)."""
        self.server.stop_api()

    def start_api(self) -> None:
        """Start the API server again on the same port and wait until it answers."""
        if "api" in self.server.pids and procs.alive(self.server.pids["api"]):
            return
        self.server.pids["api"] = procs.spawn(
            [
                str(venv_dir("3") / "bin" / "airflow"),
                "api-server",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.server.port),
            ],
            log=self.server.home / "logs" / f"api-{self.server.port}.log",
            env={**self.server.env(), **API_ENV},
            cwd=self.server.home,
            tie_to_parent=True,
        )
        wait_until(
            self.server.api_answers,
            timeout=API_START_TIMEOUT,
            interval=0.5,
            what="the trial's Airflow API server started again",
        )

    def heal(self) -> None:
        """No proxy fault, no delay, the API server up."""
        self.proxy.heal()
        self.slow.delay = 0.0
        self.start_api()

    def close(self) -> None:
        """Stop the proxies and the API server."""
        self.proxy.close()
        self.slow.close()
        self.server.stop_api()


class StoreFaults(Protocol):
    """Faults of an idempotency store."""

    read_only_supported: bool

    def lock(self) -> None:
        """Hold a lock that blocks the workers' reads and writes."""

    def unlock(self) -> None:
        """Release the lock."""

    def read_only(self) -> None:
        """Make every write fail."""

    def writable(self) -> None:
        """Make writes succeed again."""


@dataclass
class PostgresFaults:
    """Faults of a PostgreSQL store database ``url``; ``admin_url`` names another database."""

    url: str
    admin_url: str
    read_only_supported: bool = True
    _lock: psycopg.Connection[tuple[object, ...]] | None = field(default=None, repr=False)

    @property
    def database(self) -> str:
        """The store database's name."""
        return urlsplit(self.url).path.lstrip("/")

    def lock(self) -> None:
        """``LOCK TABLE`` in ACCESS EXCLUSIVE mode, held by an open transaction."""
        if self._lock is not None:
            return
        connection = psycopg.connect(self.url, connect_timeout=10)
        connection.execute("SET lock_timeout = '10s'")  # behind the workers' transactions
        connection.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        self._lock = connection

    def unlock(self) -> None:
        """Roll the locking transaction back."""
        connection, self._lock = self._lock, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):  # terminated: the lock went with its session
                connection.rollback()
            connection.close()

    def _terminate_sessions(self, admin: psycopg.Connection[tuple[object, ...]]) -> None:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.database,),
        )

    def read_only(self) -> None:
        """New transactions read-only by default, and every session cut so that they see it."""
        self.unlock()
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(
                f'ALTER DATABASE "{self.database}" SET default_transaction_read_only = on'
            )
            self._terminate_sessions(admin)

    def writable(self) -> None:
        """Reset the default and cut the sessions again, which still run read-only."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'ALTER DATABASE "{self.database}" RESET default_transaction_read_only')
            self._terminate_sessions(admin)


@dataclass
class SqliteFaults:
    """Faults of a SQLite store file: an exclusive lock held by a side connection."""

    path: Path
    read_only_supported: bool = False
    _lock: sqlite3.Connection | None = field(default=None, repr=False)

    def lock(self) -> None:
        """``BEGIN EXCLUSIVE`` on the file, held until ``unlock``."""
        if self._lock is not None:
            return
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        connection.execute("BEGIN EXCLUSIVE")
        self._lock = connection

    def unlock(self) -> None:
        """Roll back and close the side connection."""
        connection, self._lock = self._lock, None
        if connection is not None:
            connection.execute("ROLLBACK")
            connection.close()

    def read_only(self) -> None:
        """Not planned on SQLite (``read_only_supported`` is False)."""
        raise NotImplementedError

    def writable(self) -> None:
        """Nothing to undo."""
