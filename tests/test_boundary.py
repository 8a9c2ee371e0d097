"""Tests of consumer/boundary.py: the one per-message catch-all (pure)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from consumer.boundary import guarded
from consumer.contract import TriggerRequest
from consumer.errors import ConfigError, ErrorCode, StoppingError
from consumer.outcome import Outcome
from consumer.record import InboundRecord

RECORD = InboundRecord("requests", 1, 9, None, b"k", b"{}")
REQUEST = TriggerRequest(idempotency_key="k", dag_id="etl_a")


def fail(error: Exception) -> None:
    """A step that meets ``error``."""
    raise error


def test_a_step_that_works_gives_its_value() -> None:
    """No bug: the step's own value, nothing logged."""
    with capture_logs() as logs:
        assert guarded(RECORD, REQUEST, int, "42") == 42
    assert logs == []


def test_a_bug_becomes_the_messages_internal_error() -> None:
    """An unexpected exception: the message's internal_error outcome, logged once."""
    with capture_logs() as logs:
        outcome = guarded(RECORD, REQUEST, fail, LookupError("boom"))
    assert isinstance(outcome, Outcome)
    assert (outcome.status, outcome.error_code) == ("error", ErrorCode.INTERNAL_ERROR)
    assert outcome.idempotency_key == "k"
    assert [line["event"] for line in logs] == ["internal_error"]


@pytest.mark.parametrize("signal", [StoppingError("revoked"), ConfigError("bad password")])
def test_control_flow_signals_pass_through(signal: Exception) -> None:
    """A stopping worker or a configuration error is no bug: raised, not answered."""
    with pytest.raises(type(signal)):
        guarded(RECORD, REQUEST, fail, signal)
