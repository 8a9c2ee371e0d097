"""Tests of consumer/flow/config.py and parking.py: limits, reasons to wait, parked rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from consumer.contract import TriggerRequest
from consumer.flow.config import FlowLimits, parse_rate
from consumer.flow.parking import parked, unparked, wait_reason
from consumer.record import DerivedRecord, InboundRecord
from consumer.store.deferred import DeferralReason
from consumer.trace import TraceContext

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
LIMITS = FlowLimits.build(
    [
        {"dags": ["etl_*", "reports_daily"], "max_queued_runs": 20, "rate": "120/min"},
        {"dags": ["etl_special"], "max_queued_runs": 1},  # shadowed: the first match applies
    ]
)


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [("120/min", 120, 60), ("5/s", 5, 1), ("1 / hour", 1, 3600), ("10/minute", 10, 60)],
)
def test_rates_read_as_written(text: str, count: int, seconds: int) -> None:
    """A count per unit, spread evenly: one run each ``interval``."""
    rate = parse_rate(text)
    assert (rate.count, rate.per_seconds) == (count, seconds)
    assert rate.interval == timedelta(seconds=seconds / count)


@pytest.mark.parametrize("text", ["0/min", "120", "120/day", "-1/s", "fast"])
def test_an_unusable_rate_is_refused(text: str) -> None:
    """No silent default: a rate that does not read is a configuration error."""
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_the_first_matching_entry_applies() -> None:
    """Globs are case-sensitive; an unmatched DAG is not limited."""
    assert LIMITS.limit_for("etl_special") == LIMITS.dag_limits[0]
    assert LIMITS.limited("reports_daily")
    assert not LIMITS.limited("ETL_x")
    assert not FlowLimits().limited("anything")
    assert FlowLimits(airflow_max_queued_runs=50).limited("anything")


def test_an_entry_that_limits_nothing_is_refused() -> None:
    """``dags`` alone would be a typo for a limit."""
    with pytest.raises(ValidationError, match="neither"):
        FlowLimits.build([{"dags": ["x"]}])


def _request(**fields: object) -> TriggerRequest:
    return TriggerRequest.model_validate({"idempotency_key": "k", "dag_id": "etl_a", **fields})


def test_why_a_request_waits() -> None:
    """A time ahead waits for itself; a limited DAG for the releaser; the rest goes now."""
    ahead = _request(dag_id="other", not_before=(NOW + timedelta(seconds=1)).isoformat())
    past = _request(dag_id="other", not_before=(NOW - timedelta(days=1)).isoformat())
    assert wait_reason(ahead, LIMITS, NOW) is DeferralReason.NOT_BEFORE
    assert wait_reason(past, LIMITS, NOW) is None
    assert wait_reason(_request(), LIMITS, NOW) is DeferralReason.LIMIT


def test_a_parked_request_comes_back_as_it_came_in() -> None:
    """Record (a route's, with its trace context) and request survive the store's row."""
    trace = TraceContext("00-" + "a" * 32 + "-" + "b" * 16 + "-01", "x=1")
    record = DerivedRecord(
        "events", 2, 41, 1_700_000_000_000, b"k", b"{}", (("h", b"\xff"), ("h", b"2")), "r1", trace
    )
    request = _request(conf={"a": [1, None]}, not_before="2026-12-08T00:00:00+01:00", track=True)

    row = parked(record, request, "sha256:f", DeferralReason.NOT_BEFORE)
    back, again = unparked(row)

    assert (back, again) == (record, request)
    assert row.due_at == request.not_before
    plain = InboundRecord("requests", 0, 7, None, None, b"{}")
    assert unparked(parked(plain, _request(), "sha256:f", DeferralReason.LIMIT))[0] == plain
