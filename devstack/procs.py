"""Start, watch and stop server processes: own process group, logs to a file, no orphans."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Every server runs in a work dir holding this file: a pid read back from a state file
# counts as ours only if its working directory has it, so a pid reused by an unrelated
# process is never signalled. (Not an environment variable: Airflow's setproctitle
# overwrites /proc/<pid>/environ.)
MARKER = ".devstack-server"
# Linux sends the parent-death signal when the *thread* that forked the child exits, not
# the process. Servers tied to this process are therefore forked by one long-lived thread,
# never by a short-lived worker thread (Stack.up starts servers in parallel threads).
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack-spawner")


class StackError(RuntimeError):
    """Raised when a server of the local stack cannot be installed, started or reached."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent(sig: int) -> Callable[[], None]:
    def preexec() -> None:
        # Linux: the kernel sends `sig` to this child when the process that started it dies,
        # so an interrupted or killed pytest leaves no JVM or Airflow behind.
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    tie_to_parent: bool = False,
    parent_death_signal: int = signal.SIGTERM,
    user: str | None = None,
) -> int:
    """Start ``argv`` in its own session with stdout and stderr appended to ``log``.

    Args:
        argv: the command.
        log: file that receives the output.
        cwd: the server's work dir; it gets the ``MARKER`` file that ``alive`` looks for.
        env: the full environment; the current one when omitted.
        tie_to_parent: send ``parent_death_signal`` to the child when this process dies.
        parent_death_signal: the signal the kernel sends, see ``tie_to_parent``.
        user: run as this user (PostgreSQL refuses to run as root).

    Returns:
        The child's pid, which is also its process group id.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    (cwd / MARKER).touch()
    with log.open("ab") as out:

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                user=user,
                preexec_fn=_die_with_parent(parent_death_signal) if tie_to_parent else None,  # noqa: PLW1509 -- only prctl, no locks
            )

        proc = _SPAWNER.submit(popen).result() if tie_to_parent else popen()
    _CHILDREN[proc.pid] = proc
    return proc.pid


# Popen objects of children this process started, so that their exit status is reaped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def alive(pid: int) -> bool:
    """Tell whether ``pid`` is a running server of ours (a zombie counts as dead)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        ours = Path(f"/proc/{pid}/cwd/{MARKER}").exists()
    except (OSError, IndexError):
        return False
    return state != "Z" and ours


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(alive(pid) for pid in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def stop(pid: int, *, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """Send ``sig`` to the process group ``pid``, wait up to ``grace`` s, then SIGKILL the group.

    The whole group goes, so servers' own children (executor workers, gunicorn workers)
    never outlive them. A pid that is not a server of ours is left alone.
    """
    if not _group_alive(pid):
        _CHILDREN.pop(pid, None)
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while _group_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.1)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)


def wait_for(
    what: str,
    predicate: Callable[[], bool],
    *,
    timeout: float,
    pid: int | None = None,
    log: Path | None = None,
    interval: float = 0.25,
) -> None:
    """Poll ``predicate`` until it is true; fail early if ``pid`` dies.

    Raises:
        StackError: on timeout or when the process died, with the tail of ``log``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if pid is not None and not alive(pid):
            raise StackError(f"{what}: the process exited.{tail(log)}")
        time.sleep(interval)
    raise StackError(f"{what}: not ready after {timeout:.0f} s.{tail(log)}")


def tail(log: Path | None, lines: int = 30) -> str:
    """The last ``lines`` of ``log`` formatted for an error message ('' when there is none)."""
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)


def run(argv: Sequence[str], *, what: str, timeout: float, **kwargs: object) -> str:
    """Run a short command to completion and return its output.

    Raises:
        StackError: when it fails or times out, with its output.
    """
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise StackError(
            f"{what}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return str(done.stdout)
