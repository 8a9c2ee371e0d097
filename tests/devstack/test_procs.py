"""Server processes: tied ones outlive the thread that started them but not their process."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from devstack import procs
from tests.waiting import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_tied_server_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    """A tied server started from a worker thread keeps running after that thread ends."""
    pids: list[int] = []
    starter = threading.Thread(
        target=lambda: pids.append(procs.spawn(SLEEPER, log=tmp_path / "s.log", tie_to_parent=True))
    )
    starter.start()
    starter.join()
    try:
        # the kernel would signal at once if the dead thread counted as the parent
        assert not wait_until_dead(pids[0], timeout=2)
    finally:
        procs.stop(pids[0], grace=5)
    assert not procs.alive(pids[0])


def test_tied_server_dies_with_its_process(tmp_path: Path) -> None:
    """When the process that started a tied server is killed, the server goes too."""
    pid_file = tmp_path / "pid"
    script = (
        "import sys, time; from pathlib import Path; from devstack import procs; "
        f"pid = procs.spawn({SLEEPER!r}, log=Path({str(tmp_path / 's.log')!r}), "
        "tie_to_parent=True); "
        f"Path({str(pid_file)!r}).write_text(str(pid)); time.sleep(120)"
    )
    owner = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_until(pid_file.exists, timeout=30, what="the tied server's pid")
        server = int(pid_file.read_text())
        assert procs.alive(server)
        owner.kill()
        owner.wait(timeout=10)
        assert wait_until_dead(server, timeout=10)
    finally:
        owner.kill()
        owner.wait(timeout=10)


def wait_until_dead(pid: int, *, timeout: float) -> bool:
    """True once ``pid`` is gone, False if it still runs after ``timeout`` seconds."""
    try:
        wait_until(lambda: not procs.alive(pid), timeout=timeout, what=f"pid {pid} to exit")
    except AssertionError:
        return False
    return True
