"""The re-run judgement (issue 29): what a re-run mark means for a request, as a table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from consumer.pipeline.rerun import CLEARS, RerunSeen, judge_rerun
from consumer.store import RerunMark, RerunStatus

HERE = ("requests", 0, 7)
ELSEWHERE = ("requests", 1, 3)
MARK = RerunMark(
    key="k",
    rerun_id="fix-1",
    status=RerunStatus.PENDING,
    evidence="{}",
    at=HERE,
    run_state=None,
    created_at=datetime(2026, 12, 7, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("mark", "at", "seen"),
    [
        (None, HERE, RerunSeen.NEW),
        (replace(MARK, claimed_here=True), HERE, RerunSeen.NEW),
        (MARK, HERE, RerunSeen.RESUMED),  # its own mark, written before a crash
        (MARK, ELSEWHERE, RerunSeen.RESUMED),  # a re-send after a refusal: the clock decides
        (replace(MARK, evidence=None), HERE, RerunSeen.RESUMED),  # its trigger found a run
        (replace(MARK, evidence=None), ELSEWHERE, RerunSeen.CLAIMED),  # another one triggers
        (replace(MARK, claimed_here=True), ELSEWHERE, RerunSeen.NEW),
        (replace(MARK, status=RerunStatus.DONE), HERE, RerunSeen.OWN),
        (replace(MARK, status=RerunStatus.DONE), ELSEWHERE, RerunSeen.KNOWN),
    ],
)
def test_judge_rerun(mark: RerunMark | None, at: tuple[str, int, int], seen: RerunSeen) -> None:
    """Each combination of mark and record gives the module docstring's judgement."""
    assert judge_rerun(mark, at) is seen


def test_only_new_and_resumed_rerun_clear() -> None:
    """A request clears the run only for its own re-run that is not done."""
    assert {RerunSeen.NEW, RerunSeen.RESUMED} == CLEARS
