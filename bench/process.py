"""A contender as a child process: started, watched until it owns partitions, measured, stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procstat import Usage, read_usage

READY_TIMEOUT = 90.0
# py-spy must start the program itself: attaching to a running process is not permitted here
PY_SPY = Path(sys.executable).with_name("py-spy")
PROFILE_RATE = 250  # samples per second


class ContenderProcess:
    """``python -m MODULE ARGS`` with its own env, logging JSON lines to ``log``."""

    def __init__(
        self,
        module: str,
        args: list[str],
        env: dict[str, str],
        log: Path,
        *,
        profile: Path | None = None,
    ) -> None:
        """Start the process at once; with ``profile``, under py-spy writing collapsed stacks."""
        self.log = log
        command = [sys.executable, "-m", module, *args]
        if profile is not None:
            command = [
                str(PY_SPY),
                "record",
                "--format",
                "raw",
                "--rate",
                str(PROFILE_RATE),
                "--threads",
                "--output",
                str(profile),
                "--",
                *command,
            ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        # the program itself: signalled and measured (under py-spy, py-spy's child)
        self.pid = self.process.pid if profile is None else _child_of(self.process.pid)

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

    def owned(self) -> set[str]:
        """The partitions the process owns now, replayed from its assigned/revoked lines."""
        owned: set[str] = set()
        for event in self.events():
            if event.get("event") == "partitions_assigned":
                owned |= set(event.get("partitions") or ())
            elif event.get("event") == "partitions_revoked":
                owned -= set(event.get("partitions") or ())
        return owned

    def usage(self) -> Usage:
        """CPU and peak RSS so far (the process must still run)."""
        return read_usage(self.pid)

    def stop(self, timeout: float = 40.0) -> dict[str, Any]:
        """SIGTERM, wait (then SIGKILL); return the ``summary`` line if the program wrote one."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)  # py-spy writes its profile when its child exits
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        summaries = [e for e in self.events() if e.get("event") == "summary"]
        return summaries[-1] if summaries else {}


def _child_of(pid: int, timeout: float = 10.0) -> int:
    """The first child process of ``pid``, waited for (bounded)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} started no child within {timeout:.0f} s")


def wait_group_ready(processes: list[ContenderProcess], partitions: int) -> None:
    """Wait (bounded) until replicas in one group split all ``partitions`` between them.

    Each must own at least one partition and no partition two owners: the rebalance
    after the last one joined is over.

    Raises:
        RuntimeError: a process exited or the split took too long.
    """
    for process in processes:
        process.wait_ready()
    end = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < end:
        owned = [process.owned() for process in processes]
        if all(owned) and sum(map(len, owned)) == len(set().union(*owned)) == partitions:
            return
        for process in processes:
            if process.process.poll() is not None:
                raise RuntimeError(f"{process.log.name}: exited {process.process.returncode}")
        time.sleep(0.2)
    raise RuntimeError(f"replicas did not split {partitions} partitions in {READY_TIMEOUT:.0f} s")
