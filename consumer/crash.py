"""A test-only fault hook: die abruptly at a named point of the delivery path (spec §3).

Off unless ``TRIGGER_CONSUMER_TEST_CRASH_AT`` names a point; the crash/restart tests use it
to prove that a crash exactly there loses and doubles nothing.
"""

from __future__ import annotations

import os
from typing import Literal

CrashPoint = Literal["after_trigger", "after_clear", "after_reply"]
CRASH_EXIT = 86  # what a crashed worker exits with, so a test can tell it from other exits


def crash_here(point: CrashPoint, armed: CrashPoint | None) -> None:
    """Exit the process at once, without cleanup, when ``armed`` names ``point``."""
    if armed == point:
        os._exit(CRASH_EXIT)
