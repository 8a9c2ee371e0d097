"""wait_until: the only place tests sleep (STYLE §12)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises:
        AssertionError: when ``timeout`` seconds pass first, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)
