"""Where the local stack keeps downloads (a cache) and its running servers (a temp dir)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

APP = "airflow-trigger-consumer"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEVSTACK_DIR = REPO_ROOT / "devstack"
BUILTIN_DAGS = DEVSTACK_DIR / "dags"


def cache_dir() -> Path:
    """Downloads that outlive a stack: Kafka jars, Airflow venvs (honours ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / APP
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """The running stack's data, logs and state file (``DEVSTACK_HOME`` overrides).

    It lives under the temp dir, not the cache: PostgreSQL runs as the ``postgres`` user,
    which cannot enter root's home, and the data is throwaway by design.
    """
    explicit = os.environ.get("DEVSTACK_HOME")
    if explicit:
        path = Path(explicit)
    else:
        path = Path(tempfile.gettempdir()) / f"{APP}-stack-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path
