"""A throwaway PostgreSQL server on loopback: the metadata DB of the local Airflows."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from devstack import procs

READY_TIMEOUT = 60.0
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """Find PostgreSQL's server binaries, installing Debian's ``postgresql`` if missing."""
    found = _find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise procs.StackError(
            "PostgreSQL is not installed; run `apt-get install -y postgresql` as root."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    procs.run(["apt-get", "update", "-q"], what="apt-get update", timeout=600, env=env)
    procs.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        what="apt-get install postgresql",
        timeout=900,
        env=env,
    )
    found = _find_bin_dir()
    if found is None:
        raise procs.StackError("apt-get installed postgresql, but no initdb was found.")
    return found


def _find_bin_dir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root; use the ``postgres`` account then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError as exc:
        raise procs.StackError("running as root, but there is no `postgres` user") from exc
    return SUPERUSER


@dataclass
class PostgresServer:
    """One ``postgres`` process with trust auth on 127.0.0.1; data in ``work``."""

    work: Path
    port: int
    pid: int | None = None

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self, *, tie_to_parent: bool) -> None:
        """Initialise the data dir (once), start the server and wait until it accepts queries."""
        binaries = bin_dir()
        user = _run_as()
        data = self.work / "data"
        if not (data / "PG_VERSION").exists():
            self.work.mkdir(parents=True, exist_ok=True)
            data.mkdir(exist_ok=True)
            if user is not None:
                shutil.chown(self.work, user)
                shutil.chown(data, user)
            procs.run(
                [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust"],
                what="initdb",
                timeout=120,
                user=user,
            )
        self.pid = procs.spawn(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.work}",
                "-c",
                "max_connections=300",
                # a throwaway test database: durability buys nothing, speed does
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            log=self.work / "postgres.log",
            cwd=data,  # postgres chdirs into its data dir: the ownership marker must be there
            tie_to_parent=tie_to_parent,
            parent_death_signal=signal.SIGINT,  # "fast" shutdown: disconnect clients, exit
            user=user,
        )
        isready = [str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        procs.wait_for(
            "PostgreSQL",
            lambda: _succeeds(isready),
            timeout=READY_TIMEOUT,
            pid=self.pid,
            log=self.work / "postgres.log",
        )

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists (``name`` is one of ours, never user input)."""
        psql = [
            str(bin_dir() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-tA",
        ]
        exists = procs.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608
            what="psql",
            timeout=30,
        )
        if exists.strip() != "1":
            procs.run([*psql, "-c", f'CREATE DATABASE "{name}"'], what="psql", timeout=30)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 30 s."""
        if self.pid is not None:
            procs.stop(self.pid, sig=signal.SIGINT, grace=30)
            self.pid = None


def _succeeds(argv: list[str]) -> bool:
    try:
        procs.run(argv, what="probe", timeout=10)
    except procs.StackError:
        return False
    return True
