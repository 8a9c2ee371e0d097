"""Tests of consumer/pipeline/screen.py: attempt (the one place a Rejected is caught) and screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consumer.errors import ErrorCode, Rejected
from consumer.limits import DEFAULT_LIMITS
from consumer.pipeline import Refusal, attempt, screen
from consumer.pipeline.policy import Policy

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"
POLICY = Policy.from_lists("etl_*", "")


def _refuse(code: ErrorCode) -> None:
    raise Rejected(code, "refused")


def test_attempt_returns_what_the_stage_returns() -> None:
    """A stage that does not refuse gives its own value, called with the given arguments."""
    assert attempt(divmod, 7, 2) == (3, 1)
    assert attempt(int, "ff", base=16) == 255


def test_attempt_returns_the_rejected_the_stage_raised() -> None:
    """A stage's Rejected comes back as a value, with its code."""
    refused = attempt(_refuse, ErrorCode.DAG_NOT_ALLOWED)
    assert isinstance(refused, Rejected)
    assert refused.code is ErrorCode.DAG_NOT_ALLOWED


def test_attempt_lets_other_exceptions_through() -> None:
    """Only Rejected is turned into a value: a bug still reaches the per-message boundary."""
    with pytest.raises(ZeroDivisionError):
        attempt(divmod, 1, 0)


def test_screen_keeps_what_was_read_before_the_refusing_stage() -> None:
    """A decode refusal has no payload, a validation one the payload, a policy one the request."""
    undecodable = screen(b"{", DEFAULT_LIMITS, POLICY)
    assert isinstance(undecodable, Refusal)
    assert (undecodable.rejected.code, undecodable.payload) == (ErrorCode.INVALID_JSON, None)

    invalid = {"idempotency_key": "k-1", "dag_id": "etl_daily", "colour": "red"}
    unknown = screen(json.dumps(invalid).encode(), DEFAULT_LIMITS, POLICY)
    assert isinstance(unknown, Refusal)
    assert (unknown.rejected.code, unknown.payload, unknown.request) == (
        ErrorCode.UNKNOWN_FIELDS,
        invalid,
        None,
    )

    outside = screen(b'{"idempotency_key": "k-1", "dag_id": "report"}', DEFAULT_LIMITS, POLICY)
    assert isinstance(outside, Refusal)
    assert outside.rejected.code is ErrorCode.DAG_NOT_ALLOWED
    assert outside.request is not None and outside.request.dag_id == "report"


def test_screen_reads_a_derived_payload_through_its_read_callable() -> None:
    """With ``read``, the payload is built, not decoded; its Rejected is a refusal too."""
    built = screen(
        None, DEFAULT_LIMITS, POLICY, read=lambda: {"idempotency_key": "k", "dag_id": "etl_a"}
    )
    assert not isinstance(built, Refusal) and built.dag_id == "etl_a"

    def failing() -> dict[str, str]:
        raise Rejected(ErrorCode.ROUTE_EXPRESSION_FAILED, "no dag_id")

    refused = screen(None, DEFAULT_LIMITS, POLICY, read=failing)
    assert isinstance(refused, Refusal)
    assert refused.rejected.code is ErrorCode.ROUTE_EXPRESSION_FAILED


def test_rejected_is_caught_in_exactly_one_place() -> None:
    """STYLE §5: `except Rejected` occurs once in the package, in ``attempt``."""
    catches = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"except\s*\(?[^:]*\bRejected\b", line)
    ]
    assert len(catches) == 1, catches
    assert catches[0].startswith("consumer/pipeline/screen.py:")
