"""CheckResult: the verdict of one doctor check, and the small helpers every check shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CLIENT_ID = "trigger-consumer-doctor"
NAMES_SHOWN = 5


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check.

    Attributes:
        name: what was checked, like ``kafka`` or ``request topic``.
        ok: whether it passed; a warning passes.
        detail: what was found (never a secret).
        remedy: what to change, naming the setting; None when nothing is to be done.
        warning: passed, but worth a look (paused DAGs).
    """

    name: str
    ok: bool
    detail: str
    remedy: str | None = None
    warning: bool = False


def not_checked(names: Iterable[str], prerequisite: str) -> list[CheckResult]:
    """Results for checks skipped because ``prerequisite`` failed.

    Args:
        names: the skipped checks.
        prerequisite: the failed check they need.

    Returns:
        One failed result per name, pointing at the prerequisite.
    """
    return [
        CheckResult(name, False, f"not checked: {prerequisite} failed", f"fix {prerequisite} first")
        for name in names
    ]


def list_names(names: Sequence[str]) -> str:
    """A short list of names for a detail: the first few, then how many more.

    Args:
        names: DAG ids or the like.

    Returns:
        Like ``a, b, c, d, e, … (+3)``.
    """
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown}, … (+{len(names) - NAMES_SHOWN})"
