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
        target=lambda: pids.append(
            procs.spawn(SLEEPER, log=tmp_path / "s.log", cwd=tmp_path, tie_to_parent=True)
        )
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
        "import time; from pathlib import Path; from devstack import procs\n"
        f"work = Path({str(tmp_path)!r})\n"
        f"pid = procs.spawn({SLEEPER!r}, log=work / 's.log', cwd=work, tie_to_parent=True)\n"
        # written then renamed: the file appears with its whole content, never empty
        f"Path({str(pid_file)!r} + '.tmp').write_text(str(pid))\n"
        f"Path({str(pid_file)!r} + '.tmp').rename({str(pid_file)!r})\n"
        "time.sleep(120)\n"
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


def test_a_pid_that_is_not_our_server_is_never_signalled() -> None:
    """A pid from a stale state file that now belongs to another process counts as dead."""
    stranger = subprocess.Popen(SLEEPER)  # runs outside any devstack work dir
    try:
        assert not procs.alive(stranger.pid)
        procs.stop(stranger.pid, grace=1)
        assert stranger.poll() is None  # left alone
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
