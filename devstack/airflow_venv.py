"""Airflow's own virtual environments: one per release, installed once from PyPI into the cache.

The stack's releases install with no constraints file: the index's newest compatible
dependencies resolve (facts §1), as on a user's machine. An older release may not run with
today's dependencies (Airflow 3.2.2 fails to start with pydantic 2.14), and Airflow's
constraints files are not on a package registry; so an older release installs with what
the index held the day it came out (``pip --uploaded-prior-to``), a stand-in for its
constraints file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from devstack import procs
from devstack.paths import cache_dir

INSTALL_TIMEOUT = 1800.0


def release_venv(version: str, *, uploaded_before: str | None = None) -> Path:
    """Install ``apache-airflow[postgres]==version`` once; return its venv.

    Args:
        version: an exact Airflow release (``3.3.2``).
        uploaded_before: an ISO 8601 instant: only packages uploaded before it resolve.

    Returns:
        The venv under the cache dir; a marker file names what was installed, so that a
        venv installed otherwise is installed again.
    """
    venv = cache_dir() / f"airflow-{version}" / "venv"
    marker = venv / ".installed"
    spec = version if uploaded_before is None else f"{version} uploaded before {uploaded_before}"
    if marker.exists() and marker.read_text() == spec:
        return venv
    procs.run(
        [sys.executable, "-m", "venv", "--clear", str(venv)], what="creating venv", timeout=120
    )
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    procs.run([*pip, "-U", "pip"], what="upgrading pip", timeout=300)
    window = [] if uploaded_before is None else ["--uploaded-prior-to", uploaded_before]
    procs.run(
        [*pip, *window, f"apache-airflow[postgres]=={version}"],
        what=f"pip install apache-airflow {version}",
        timeout=INSTALL_TIMEOUT,
    )
    marker.write_text(spec)
    return venv
