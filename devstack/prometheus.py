"""A throwaway Prometheus server on loopback: scrapes workers, evaluates the alert rules."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml  # type: ignore[import-untyped]

from devstack import procs

READY_TIMEOUT = 60.0
BINARIES = ("prometheus", "promtool")


def bin_dir() -> Path:
    """Find ``prometheus`` and ``promtool``, installing Debian's ``prometheus`` if missing.

    The package's service is not started: Debian images forbid it (``policy-rc.d``), and
    the stack runs its own server on a free port anyway.
    """
    found = _find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise procs.StackError(
            "Prometheus is not installed; run `apt-get install -y prometheus` as root."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # another install (PostgreSQL's, a parallel test run) may hold dpkg's lock: wait for it
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=600"]
    procs.run(
        ["apt-get", *wait_for_lock, "update", "-q"], what="apt-get update", timeout=600, env=env
    )
    procs.run(
        [
            "apt-get",
            *wait_for_lock,
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "prometheus",
        ],
        what="apt-get install prometheus",
        timeout=900,
        env=env,
    )
    found = _find_bin_dir()
    if found is None:
        raise procs.StackError("apt-get installed prometheus, but no promtool was found.")
    return found


def _find_bin_dir() -> Path | None:
    found = [shutil.which(name) for name in BINARIES]
    if all(found) and len({Path(str(path)).parent for path in found}) == 1:
        return Path(str(found[0])).parent
    return None


def promtool() -> Path:
    """The ``promtool`` binary (rule checks and rule unit tests), installed if missing."""
    return bin_dir() / "promtool"


def scrape_config(
    targets: list[str],
    *,
    job: str,
    rule_files: list[Path],
    interval: str = "1s",
) -> dict[str, Any]:
    """A ``prometheus.yml`` document: one static job scraping ``targets``, and the rules.

    Args:
        targets: ``host:port`` of each ``/metrics`` to scrape.
        job: the job label of the targets (the alert rules select ``up`` by it).
        rule_files: rule files to load.
        interval: scrape and rule-evaluation interval (short in tests, so alerts move fast).
    """
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
    }


@dataclass
class PrometheusServer:
    """One ``prometheus`` process on 127.0.0.1 with its TSDB and config in ``work``."""

    work: Path
    port: int = field(default_factory=procs.free_port)
    pid: int | None = None

    @property
    def url(self) -> str:
        """The server's base URL (HTTP API under ``/api/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, config: dict[str, Any], *, tie_to_parent: bool) -> None:
        """Write ``config``, start the server and wait until it is ready to serve queries."""
        binaries = bin_dir()
        self.work.mkdir(parents=True, exist_ok=True)
        config_file = self.work / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        log = self.work / "prometheus.log"
        self.pid = procs.spawn(
            [
                str(binaries / "prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.work / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log=log,
            cwd=self.work,
            tie_to_parent=tie_to_parent,
        )
        procs.wait_for(
            "Prometheus",
            self.ready,
            timeout=READY_TIMEOUT,
            pid=self.pid,
            log=log,
            interval=0.2,
        )

    def ready(self) -> bool:
        """Tell whether ``/-/ready`` answers 200."""
        try:
            return requests.get(f"{self.url}/-/ready", timeout=5).ok
        except requests.RequestException:
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data`` (raises on an error answer)."""
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = answer.json()
        if answer.status_code != 200 or body.get("status") != "success":  # noqa: PLR2004 -- HTTP OK
            raise procs.StackError(f"Prometheus {path} {params}: {answer.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant query now; return its result vector."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def stop(self) -> None:
        """SIGTERM (Prometheus flushes its head block), SIGKILL after 30 s."""
        if self.pid is not None:
            procs.stop(self.pid, grace=30)
            self.pid = None
