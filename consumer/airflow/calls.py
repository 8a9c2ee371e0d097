"""Call counting: what each HTTP request to Airflow is for, and the hook that counts it.

Every request a transport sends (each retry too, answered or not) calls the hook of its
purpose just before it goes out. A transport serves one purpose, ``trigger`` or
``tracking``; its version detection and JWT logins count as ``detect`` and ``login``.
The hooks are bound once, when the transport is built, so counting a call costs one call
of a bound Prometheus counter child and no label lookup::

    count = metrics.bind_airflow_calls
    transport = Transport(connection, purpose=CallPurpose.TRACKING, count_calls=count)
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TypeAlias

OnCall: TypeAlias = Callable[[], None]
"""Called once per HTTP request, just before it is sent."""

CountCalls: TypeAlias = Callable[[str], OnCall]
"""Gives the ``OnCall`` hook that counts requests of one purpose (``CallPurpose``)."""


class CallPurpose(StrEnum):
    """Why a request goes to Airflow: the ``purpose`` label of the call counter."""

    TRIGGER = "trigger"  # creating runs, and the trigger path's look-ups (409, paused flag)
    TRACKING = "tracking"  # completion tracking's list and get calls
    FLOW = "flow"  # the releaser's queued-run counts (issue 30)
    DETECT = "detect"  # API version detection, once per client
    LOGIN = "login"  # JWT logins (POST /auth/token), about once per token lifetime


def uncounted() -> None:
    """Count nothing: the ``OnCall`` of a request nobody counts."""


def count_nothing(purpose: str) -> OnCall:
    """The ``CountCalls`` of a client built without metrics (doctor, tests): no-op hooks.

    Args:
        purpose: the purpose the hook would count.

    Returns:
        A hook that does nothing.
    """
    del purpose
    return uncounted
