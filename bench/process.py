"""A contender as a child process: started, watched until it owns partitions, measured, stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procstat import Usage, read_usage

READY_TIMEOUT = 90.0


class ContenderProcess:
    """``python -m MODULE ARGS`` with its own env, logging JSON lines to ``log``."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], log: Path) -> None:
        """Start the process at once."""
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def events(self) -> list[dict[str, Any]]:
        """Every JSON line logged so far."""
        found = []
        for line in self.log.read_bytes().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    def wait_ready(self) -> None:
        """Wait (bounded) for a ``partitions_assigned`` line naming partitions.

        Raises:
            RuntimeError: the process exited or took too long.
        """
        end = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log.name}: exited {self.process.returncode}")
            if any(
                e.get("event") == "partitions_assigned" and e.get("partitions")
                for e in self.events()
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.log.name}: no partitions after {READY_TIMEOUT:.0f} s")

    def usage(self) -> Usage:
        """CPU and peak RSS so far (the process must still run)."""
        return read_usage(self.process.pid)

    def stop(self, timeout: float = 40.0) -> dict[str, Any]:
        """SIGTERM, wait (then SIGKILL); return the ``summary`` line if the program wrote one."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        summaries = [e for e in self.events() if e.get("event") == "summary"]
        return summaries[-1] if summaries else {}
