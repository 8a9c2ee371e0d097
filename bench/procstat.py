"""CPU seconds and peak RSS of a child process, read from /proc (Linux; no extra dependency)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """A process's resource use at one moment."""

    cpu_seconds: float
    peak_rss_bytes: int


def read_usage(pid: int) -> Usage:
    """User + system CPU and the high-water mark of RSS (``VmHWM``) of a live process.

    Raises:
        FileNotFoundError: the process is gone.
    """
    proc = Path(f"/proc/{pid}")
    # the command name in field 2 may contain spaces: split after its closing parenthesis
    fields = proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    peak = 0
    for line in proc.joinpath("status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return Usage(cpu_seconds=(utime + stime) / CLOCK_TICKS, peak_rss_bytes=peak)


def current_rss(pid: int) -> int:
    """The resident set size (``VmRSS``) of a live process, in bytes; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
