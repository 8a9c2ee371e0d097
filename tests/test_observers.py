"""Tests of consumer/observers.py: what watches each answered request, at one hook (pure)."""

from __future__ import annotations

from dataclasses import replace

from structlog.testing import capture_logs

from consumer.errors import ErrorCode, Rejected
from consumer.metrics import Metrics
from consumer.observers import NO_AIRFLOW, LogObserver, MetricsObserver, Timing, notify
from consumer.outcome import Outcome
from consumer.record import InboundRecord

RECORD = InboundRecord("requests", 2, 40, None, b"k", b"{}")
REJECTED = Outcome.rejected(RECORD, Rejected(ErrorCode.INVALID_JSON, "not JSON"))


class Failing:
    """An observer with a bug."""

    def request_done(self, record: InboundRecord, outcome: Outcome, timing: Timing) -> None:
        """Raise, as a buggy observer would."""
        raise LookupError("observer bug")


def test_the_metrics_observer_counts_the_outcome_and_its_airflow_time() -> None:
    """Counted by status and code; the Airflow time only of a request that called Airflow."""
    metrics = Metrics()
    observer = MetricsObserver(metrics)
    observer.request_done(RECORD, REJECTED, Timing(airflow_seconds=0.2))  # no attempts
    observer.request_done(RECORD, replace(REJECTED, attempts=1), Timing(airflow_seconds=0.2))
    sample = metrics.registry.get_sample_value
    labels = {"status": "rejected", "code": "invalid_json"}
    assert sample("trigger_consumer_requests_total", labels) == 2
    assert sample("trigger_consumer_airflow_call_seconds_count", {"outcome": "rejected"}) == 1


def test_the_log_observer_writes_request_done_with_the_messages_identifiers() -> None:
    """The request_done line names status, code, topic, partition and offset."""
    with capture_logs() as logs:
        LogObserver().request_done(RECORD, REJECTED, NO_AIRFLOW)
    (line,) = [entry for entry in logs if entry["event"] == "request_done"]
    assert (line["status"], line["code"]) == ("rejected", ErrorCode.INVALID_JSON)
    assert (line["topic"], line["partition"], line["offset"]) == ("requests", 2, 40)


def test_an_observer_that_raises_is_logged_and_the_others_still_run() -> None:
    """Watching never changes what happens to a request: a failing observer is only logged."""
    metrics = Metrics()
    with capture_logs() as logs:
        notify([Failing(), MetricsObserver(metrics)], RECORD, REJECTED, NO_AIRFLOW)
    assert [entry["event"] for entry in logs] == ["observer_failed"]
    labels = {"status": "rejected", "code": "invalid_json"}
    assert metrics.registry.get_sample_value("trigger_consumer_requests_total", labels) == 1
