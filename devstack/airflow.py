"""Real Apache Airflow 3 and 2 servers on loopback, each from its own cached venv.

An extra Airflow 3 API server can also serve HTTPS (``start_extra_api(..., tls=...)``) with
a certificate from a throwaway CA that ``tls.issue_tls`` makes; nothing of it is committed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from devstack import procs
from devstack.airflow_venv import release_venv
from devstack.paths import BUILTIN_DAGS
from devstack.tls import ServerTls

VERSIONS = {"3": "3.3.2", "2": "2.11.2"}
USERNAME = "admin"
PASSWORD = "devstack-admin"
READY_TIMEOUT = 180.0
PARALLELISM = 2  # small, so the stack fits beside the tests on 2 cores


def builtin_dag_ids() -> list[str]:
    """The DAGs every devstack Airflow serves: one file per DAG, named by its dag_id."""
    return sorted(path.stem for path in BUILTIN_DAGS.glob("*.py") if not path.stem.startswith("_"))


def venv_dir(major: str) -> Path:
    """The venv of the stack's Airflow of that major version (installed on first use)."""
    return release_venv(VERSIONS[major])


@dataclass
class AirflowServer:
    """One Airflow installation: API server, scheduler and (Airflow 3) DAG processor.

    ``tls`` is set only on an extra API server started with a certificate: its URL is
    then ``https://`` and the devstack's own calls (health, login) trust ``tls.ca``.
    """

    major: str
    home: Path
    port: int
    database_url: str
    log_ports: tuple[int, int]
    pids: dict[str, int] = field(default_factory=dict)
    tls: ServerTls | None = None

    @property
    def version(self) -> str:
        """The exact Airflow version."""
        return VERSIONS[self.major]

    @property
    def url(self) -> str:
        """Base URL of the API server and UI."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> str | bool:
        """What ``requests`` should verify the server's certificate against."""
        return str(self.tls.ca) if self.tls is not None else True

    @property
    def api_version(self) -> str:
        """The REST API path segment: ``v2`` on Airflow 3, ``v1`` on Airflow 2."""
        return "v2" if self.major == "3" else "v1"

    def describe(self) -> dict[str, str]:
        """How to reach it, as printed by ``python -m devstack up``."""
        return {
            "url": self.url,
            "username": USERNAME,
            "password": PASSWORD,
            "version": self.version,
            "api_version": self.api_version,
        }

    def _bin(self) -> Path:
        return release_venv(self.version) / "bin"

    def env(self) -> dict[str, str]:
        """The environment every process of this Airflow runs with."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_ports[0]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.log_ports[1]),
                "PATH": f"{self._bin()}:{env.get('PATH', '')}",
            }
        )
        if self.major == "3":
            env.update(
                {
                    "AIRFLOW__API__HOST": "127.0.0.1",
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__API__BASE_URL": self.url,
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                        self.home / "passwords.json"
                    ),
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                }
            )
        else:
            env.update(
                {
                    "AIRFLOW__API__AUTH_BACKENDS": (
                        "airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session"
                    ),
                    "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                    "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
                    "AIRFLOW__WEBSERVER__BASE_URL": self.url,
                    "AIRFLOW__WEBSERVER__WORKERS": "2",
                    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "30",
                }
            )
        return env

    def _airflow(self, *args: str, timeout: float, what: str) -> str:
        return procs.run(
            [str(self._bin() / "airflow"), *args],
            what=what,
            timeout=timeout,
            env=self.env(),
            cwd=self.home,
        )

    def prepare(self, extra_dags: list[Path]) -> None:
        """Create the home, link the DAG folders, migrate the DB and set up credentials."""
        dags = self.home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        # built-in DAG files sit at the top, where Airflow puts them on sys.path (for _compat)
        for source in BUILTIN_DAGS.glob("*.py"):
            self._link(dags / source.name, source)
        for extra in extra_dags:
            self.link_dags(extra)
        (self.home / "passwords.json").write_text(json.dumps({USERNAME: PASSWORD}))
        self._airflow("db", "migrate", timeout=300, what=f"airflow {self.version} db migrate")
        if self.major == "2":
            self._airflow(
                "users",
                "create",
                "--username",
                USERNAME,
                "--password",
                PASSWORD,
                "--firstname",
                "Dev",
                "--lastname",
                "Stack",
                "--role",
                "Admin",
                "--email",
                "admin@example.com",
                timeout=120,
                what="airflow users create",
            )

    def link_dags(self, folder: Path) -> None:
        """Also serve the user's DAG files in ``folder`` (a symlink under the DAGs folder)."""
        self._link(self.home / "dags" / folder.resolve().name, folder)

    @staticmethod
    def _link(link: Path, target: Path) -> None:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())

    def _spawn(self, role: str, argv: list[str], *, tie_to_parent: bool) -> None:
        self.pids[role] = procs.spawn(
            [str(self._bin() / "airflow"), *argv],
            log=self.home / "logs" / f"{role}.log",
            env=self.env(),
            cwd=self.home,
            tie_to_parent=tie_to_parent,
        )

    def start(self, *, tie_to_parent: bool) -> None:
        """Start every process runs need and wait until the built-in DAGs are listed."""
        self.start_api(tie_to_parent=tie_to_parent)
        # --skip-serve-logs: otherwise the scheduler's log server binds all interfaces
        self._spawn("scheduler", ["scheduler", "--skip-serve-logs"], tie_to_parent=tie_to_parent)
        if self.major == "3":
            self._spawn("dag-processor", ["dag-processor"], tie_to_parent=tie_to_parent)
        procs.wait_for(
            f"Airflow {self.version} scheduler",
            self.scheduler_healthy,
            timeout=READY_TIMEOUT,
            pid=self.pids["scheduler"],
            log=self.home / "logs" / "scheduler.log",
            interval=1.0,
        )
        procs.wait_for(
            f"Airflow {self.version} DAGs {builtin_dag_ids()}",
            self.lists_builtin_dags,
            timeout=READY_TIMEOUT,
            log=self.home / "logs" / "dag-processor.log",
            interval=1.0,
        )

    def start_api(self, *, tie_to_parent: bool) -> None:
        """Start only the API server (same port and credentials) and wait until it answers."""
        if self.major == "3":
            argv = ["api-server", "-H", "127.0.0.1", "-p", str(self.port)]
        else:
            argv = ["webserver", "-H", "127.0.0.1", "-p", str(self.port)]
        self._spawn("api", argv, tie_to_parent=tie_to_parent)
        procs.wait_for(
            f"Airflow {self.version} API server",
            self.api_answers,
            timeout=READY_TIMEOUT,
            pid=self.pids["api"],
            log=self.home / "logs" / "api.log",
            interval=0.5,
        )

    def start_extra_api(
        self,
        extra_env: dict[str, str],
        *,
        tie_to_parent: bool,
        tls: ServerTls | None = None,
    ) -> AirflowServer:
        """Start a second Airflow 3 API server on a free port with ``extra_env``; same home, DB.

        The shared servers keep running untouched; stop the returned one with ``stop_api``.
        Used for settings a test needs but others must not see (a short JWT expiry, HTTPS).

        Args:
            extra_env: Airflow settings (``AIRFLOW__SECTION__KEY``) for this process only.
            tie_to_parent: the process dies with this one.
            tls: serve HTTPS only, with this certificate (``api-server --ssl-cert/--ssl-key``);
                the readiness wait then verifies it against ``tls.ca``.

        Returns:
            A server object for the new API process (its ``pids`` hold only ``api``).

        Raises:
            StackError: on Airflow 2 (its webserver keeps a pid file per home), or when the
                server does not come up.
        """
        if self.major != "3":
            raise procs.StackError("an extra API server is only supported on Airflow 3")
        extra = AirflowServer(
            major=self.major,
            home=self.home,
            port=procs.free_port(),
            database_url=self.database_url,
            log_ports=self.log_ports,
            tls=tls,
        )
        argv = ["api-server", "-H", "127.0.0.1", "-p", str(extra.port)]
        if tls is not None:
            argv += ["--ssl-cert", str(tls.cert), "--ssl-key", str(tls.key)]
        log = self.home / "logs" / f"api-{extra.port}.log"
        extra.pids["api"] = procs.spawn(
            [str(self._bin() / "airflow"), *argv],
            log=log,
            env={**extra.env(), **extra_env},
            cwd=self.home,
            tie_to_parent=tie_to_parent,
        )
        procs.wait_for(
            f"extra Airflow {self.version} API server",
            extra.api_answers,
            timeout=READY_TIMEOUT,
            pid=extra.pids["api"],
            log=log,
            interval=0.5,
        )
        return extra

    def stop_api(self) -> None:
        """Stop only the API server; the scheduler keeps running."""
        pid = self.pids.pop("api", None)
        if pid is not None:
            procs.stop(pid, grace=30)

    def stop(self) -> None:
        """Stop everything: scheduler first (a task worker would otherwise retry a dead API)."""
        for role in ("scheduler", "dag-processor", "api"):
            pid = self.pids.pop(role, None)
            if pid is not None:
                procs.stop(pid, sig=signal.SIGTERM, grace=30)

    def running(self) -> bool:
        """Tell whether every process of this Airflow is alive."""
        roles = {"api", "scheduler"} | ({"dag-processor"} if self.major == "3" else set())
        return roles <= self.pids.keys() and all(procs.alive(self.pids[r]) for r in roles)

    def _health(self) -> dict[str, object] | None:
        path = "/api/v2/monitor/health" if self.major == "3" else "/health"
        try:
            answer = requests.get(self.url + path, timeout=5, verify=self.verify)
        except requests.RequestException:
            return None
        if answer.status_code != 200:  # noqa: PLR2004 -- HTTP OK
            return None
        body: dict[str, object] = answer.json()
        return body

    def api_answers(self) -> bool:
        """Tell whether the API server answers its health endpoint."""
        return self._health() is not None

    def scheduler_healthy(self) -> bool:
        """Tell whether the health endpoint reports a healthy scheduler."""
        health = self._health()
        scheduler = health.get("scheduler") if health else None
        return isinstance(scheduler, dict) and scheduler.get("status") == "healthy"

    def session(self) -> requests.Session:
        """A requests session authenticated as the devstack admin."""
        session = requests.Session()
        if self.tls is not None:
            # requests lets REQUESTS_CA_BUNDLE from the environment override session.verify
            session.trust_env = False
            session.verify = self.verify
        if self.major == "2":
            session.auth = (USERNAME, PASSWORD)
            return session
        answer = session.post(
            f"{self.url}/auth/token",
            json={"username": USERNAME, "password": PASSWORD},
            timeout=10,
        )
        answer.raise_for_status()
        session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return session

    def lists_builtin_dags(self) -> bool:
        """Tell whether the API lists every built-in DAG."""
        try:
            answer = self.session().get(
                f"{self.url}/api/{self.api_version}/dags", params={"limit": 1000}, timeout=10
            )
        except requests.RequestException:
            return False
        if answer.status_code != 200:  # noqa: PLR2004 -- HTTP OK
            return False
        listed = {dag["dag_id"] for dag in answer.json()["dags"]}
        return set(builtin_dag_ids()) <= listed


def new_airflow(major: str, home: Path, database_url: str) -> AirflowServer:
    """An Airflow on fresh free ports (not started yet)."""
    return AirflowServer(
        major=major,
        home=home,
        port=procs.free_port(),
        database_url=database_url,
        log_ports=(procs.free_port(), procs.free_port()),
    )


def wait_for_run(
    server: AirflowServer, dag_id: str, run_id: str, *, timeout: float = 120.0
) -> dict[str, object]:
    """Poll a DAG run until it reaches a final state; return its last JSON body."""
    session = server.session()
    url = f"{server.url}/api/{server.api_version}/dags/{dag_id}/dagRuns/{run_id}"
    deadline = time.monotonic() + timeout
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        answer = session.get(url, timeout=10)
        answer.raise_for_status()
        body = answer.json()
        if body.get("state") in {"success", "failed"}:
            return body
        time.sleep(0.5)
    raise procs.StackError(f"run {dag_id}/{run_id} not final after {timeout:.0f} s: {body}")
