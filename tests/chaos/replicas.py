"""Replicas: the worker processes of one trial, killed, paused and restarted by the harness.

The fleet knows which exits the nemesis caused (SIGKILL) and restarts those replicas; an
exit it did not cause is a death of the replica's own accord, recorded for the checker and
restarted too, so the trial goes on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from tests.scenarios.harness import WorkerProcess

RESTART_DELAY = 2.0  # seconds between a SIGKILL and the harness's restart


@dataclass
class Replica:
    """One replica: its process, its /readyz port, and what the nemesis did to it."""

    name: str
    worker: WorkerProcess
    port: int
    paused: bool = False
    killed_at: float | None = None  # monotonic time of the nemesis's SIGKILL, until restarted

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        return self.worker.process.pid if self.worker.process is not None else None

    def readiness(self) -> tuple[int, list[str]]:
        """/readyz's status and reasons (0 and the error when it does not answer)."""
        try:
            answer = requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5)
        except requests.RequestException as exc:
            return 0, [f"no answer: {exc.__class__.__name__}"]
        try:
            reasons = list(answer.json().get("reasons", []))
        except ValueError:
            reasons = [answer.text[:200]]
        return answer.status_code, reasons


@dataclass(frozen=True)
class Death:
    """A replica that exited without the nemesis killing it."""

    replica: str
    code: int | None
    at: float
    tail: str


ReplicaFactory = Callable[[str], tuple[WorkerProcess, int]]
"""Given a replica name, its (not yet started) worker process and /readyz port."""


@dataclass
class Fleet:
    """The trial's replicas, up to ``limit`` of them."""

    make: ReplicaFactory
    limit: int
    started_at: float = field(default_factory=time.monotonic)
    replicas: list[Replica] = field(default_factory=list)
    deaths: list[Death] = field(default_factory=list)
    # every process the nemesis SIGKILLed, and when (wall clock: replies carry processed_at)
    killed_pids: dict[int, datetime] = field(default_factory=dict)

    def add(self) -> Replica | None:
        """Launch one more replica (a rebalance follows); None when at the limit."""
        if len(self.replicas) >= self.limit:
            return None
        name = f"r{len(self.replicas)}"
        worker, port = self.make(name)
        replica = Replica(name=name, worker=worker, port=port)
        worker.launch()
        self.replicas.append(replica)
        return replica

    def pick(self, index: int) -> Replica:
        """The replica a planned fault names by index (modulo the replicas running)."""
        return self.replicas[index % len(self.replicas)]

    def kill(self, replica: Replica) -> None:
        """SIGKILL a replica; ``supervise`` restarts it ``RESTART_DELAY`` later."""
        replica.killed_at = time.monotonic()
        replica.paused = False
        if replica.pid is not None:
            self.killed_pids[replica.pid] = datetime.now(UTC)
        replica.worker.kill()

    def pause(self, replica: Replica) -> None:
        """SIGSTOP a replica (its group session expires while it stays paused)."""
        if replica.pid is not None and replica.worker.process.poll() is None:  # type: ignore[union-attr]
            os.kill(replica.pid, signal.SIGSTOP)
            replica.paused = True

    def resume(self, replica: Replica) -> None:
        """SIGCONT a paused replica."""
        if replica.paused and replica.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # killed meanwhile: supervise restarts it
                os.kill(replica.pid, signal.SIGCONT)
            replica.paused = False

    def supervise(self) -> None:
        """Restart replicas the nemesis killed, and record and restart those that died."""
        now = time.monotonic()
        for replica in self.replicas:
            process = replica.worker.process
            if process is None or process.poll() is None:
                continue
            if replica.killed_at is None:
                self.deaths.append(
                    Death(
                        replica.name,
                        process.returncode,
                        now - self.started_at,
                        replica.worker.tail(1)[:300],
                    )
                )
            elif now < replica.killed_at + RESTART_DELAY:
                continue
            replica.killed_at = None
            replica.paused = False
            replica.worker.launch()

    def heal(self) -> None:
        """Resume every paused replica and restart every stopped one at once."""
        for replica in self.replicas:
            self.resume(replica)
            if replica.killed_at is not None:
                replica.killed_at = time.monotonic() - RESTART_DELAY
        self.supervise()

    def readiness(self) -> dict[str, tuple[int, list[str]]]:
        """Each replica's /readyz status and reasons."""
        return {replica.name: replica.readiness() for replica in self.replicas}

    def close(self) -> None:
        """Make sure every process is gone (paused ones are resumed first)."""
        for replica in self.replicas:
            self.resume(replica)
            replica.worker.close()

    def logs(self) -> list[Path]:
        """The log file of each replica."""
        return [replica.worker.log for replica in self.replicas]
