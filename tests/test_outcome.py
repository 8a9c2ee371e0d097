"""Outcome: each constructor fills exactly what the reply and dead-letter record need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from consumer.contract import Status, TriggerRequest
from consumer.errors import AirflowError, ErrorCode, Rejected
from consumer.outcome import UNKNOWN_SOURCE, Outcome, RequestEcho, salvage, source_of
from consumer.record import InboundRecord
from consumer.store import EntryStatus, RequestOrigin, StoredEntry

RECORD = InboundRecord(
    topic="requests",
    partition=3,
    offset=1234,
    timestamp_ms=1_735_689_600_000,
    key=b"raw-key",
    value=b"{}",
    headers=(("correlation-id", b"hdr-corr"),),
)
REQUEST = TriggerRequest(
    idempotency_key="k-1",
    dag_id="etl_daily",
    correlation_id="corr-1",
    reply_topic="team-replies",
    track=True,
)


@dataclass(frozen=True)
class Run:
    """A stand-in shaped like airflow.runs.DagRun (a plain value, not a mock)."""

    dag_run_id: str = "kafka__k-1"
    state: str = "queued"
    logical_date: datetime | None = None
    run_url: str = "http://airflow/dags/etl_daily/runs/kafka__k-1"


def test_source_describes_the_record() -> None:
    """source_of gives topic, partition, offset and the timestamp in UTC."""
    source = source_of(RECORD)
    assert (source.topic, source.partition, source.offset) == ("requests", 3, 1234)
    assert source.timestamp == datetime(2025, 1, 1, tzinfo=UTC)


def test_unknown_timestamps_are_none() -> None:
    """A missing, negative (Kafka's -1) or absurd timestamp becomes None."""
    for millis in (None, -1, 10**20):
        record = InboundRecord("t", 0, 0, millis, None, None)
        assert source_of(record).timestamp is None


def test_triggered_carries_request_and_run() -> None:
    """A triggered outcome echoes the request and describes the run."""
    outcome = Outcome.triggered(RECORD, REQUEST, Run(), attempts=2)
    assert outcome.status is Status.TRIGGERED
    assert (outcome.idempotency_key, outcome.correlation_id, outcome.dag_id) == (
        "k-1",
        "corr-1",
        "etl_daily",
    )
    assert (outcome.dag_run_id, outcome.run_state, outcome.attempts) == ("kafka__k-1", "queued", 2)
    assert outcome.reply_topic == "team-replies"
    assert outcome.track is True
    assert outcome.error is None
    assert outcome.error_code is None
    assert outcome.processed_at.tzinfo is not None


def test_duplicate_has_its_own_status() -> None:
    """A duplicate outcome has status duplicate and the existing run's state."""
    outcome = Outcome.duplicate(RECORD, REQUEST, Run(state="success"), attempts=0)
    assert outcome.status is Status.DUPLICATE
    assert outcome.run_state == "success"


def test_rejected_before_validation_salvages_what_it_can() -> None:
    """A rejection of unreadable input echoes valid fields only, and the header correlation id."""
    rejected = Rejected(ErrorCode.SCHEMA_VIOLATION, "bad", {"errors": []})
    outcome = Outcome.rejected(
        RECORD, rejected, payload={"idempotency_key": "k-9", "dag_id": "a b"}
    )
    assert outcome.status is Status.REJECTED
    assert outcome.error_code is ErrorCode.SCHEMA_VIOLATION
    assert (outcome.idempotency_key, outcome.dag_id) == ("k-9", None)
    assert outcome.correlation_id == "hdr-corr"
    assert outcome.reply_topic is None
    nothing = Outcome.rejected(
        InboundRecord("t", 0, 0, None, None, None), Rejected(ErrorCode.INVALID_JSON, "no")
    )
    assert (nothing.idempotency_key, nothing.correlation_id, nothing.dag_id) == (None, None, None)


def test_rejected_after_validation_keeps_reply_topic_unless_that_was_refused() -> None:
    """Policy refusals reply on the request's topic, except a refused reply topic."""
    dag = Outcome.rejected(RECORD, Rejected(ErrorCode.DAG_NOT_ALLOWED, "no"), request=REQUEST)
    assert dag.reply_topic == "team-replies"
    assert dag.idempotency_key == "k-1"
    topic = Outcome.rejected(
        RECORD, Rejected(ErrorCode.REPLY_TOPIC_NOT_ALLOWED, "no"), request=REQUEST
    )
    assert topic.reply_topic is None


def test_rejection_message_is_bounded() -> None:
    """A long rejection message is cut in the outcome."""
    outcome = Outcome.rejected(RECORD, Rejected(ErrorCode.INVALID_JSON, "x" * 50_000))
    assert outcome.error is not None
    assert len(outcome.error.message) <= 1001


def test_failed_carries_the_airflow_error() -> None:
    """An Airflow error becomes an error outcome with its code, details and attempts."""
    error = AirflowError(ErrorCode.DAG_NOT_FOUND, "no such DAG", {"http_status": 404})
    outcome = Outcome.failed(RECORD, error, request=REQUEST, attempts=1)
    assert outcome.status is Status.ERROR
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.DAG_NOT_FOUND
    assert outcome.error.details == {"http_status": 404}
    assert outcome.attempts == 1


def test_internal_error_names_only_the_exception_type() -> None:
    """An internal error says which exception, never its text (which may hold anything)."""
    outcome = Outcome.internal_error(RECORD, KeyError("password=hunter2"), payload=None)
    assert outcome.status is Status.ERROR
    assert outcome.error is not None
    assert outcome.error.code is ErrorCode.INTERNAL_ERROR
    assert "hunter2" not in outcome.error.message
    assert outcome.error.details == {"exception": "KeyError"}
    with_request = Outcome.internal_error(RECORD, ValueError(), request=REQUEST, attempts=3)
    assert (with_request.idempotency_key, with_request.attempts) == ("k-1", 3)


def test_completed_follows_a_tracked_run() -> None:
    """A tracked run's final state gives a completed outcome; a failed run carries run_failed."""
    triggered = Outcome.triggered(RECORD, REQUEST, Run(), attempts=1)
    done = triggered.completed(Run(state="success"))
    assert (done.status, done.run_state, done.error) == (Status.COMPLETED, "success", None)
    failed = triggered.completed(Run(state="failed"))
    assert failed.status is Status.COMPLETED
    assert failed.error_code is ErrorCode.RUN_FAILED
    assert failed.source == triggered.source


def _tracked_entry(origin: RequestOrigin | None) -> StoredEntry:
    """A tracked store entry for key ``k-1`` with the given origin."""
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    return StoredEntry(
        key="k-1",
        fingerprint="fp",
        dag_id="etl_daily",
        dag_run_id="kafka__k-1",
        status=EntryStatus.TRIGGERED,
        run_state="queued",
        logical_date=None,
        run_url=None,
        track=True,
        completed_at=None,
        created_at=moment,
        updated_at=moment,
        origin=origin,
    )


def test_completed_for_a_stored_entry_echoes_its_origin() -> None:
    """completed_for fills source, correlation id and reply topic from the entry's origin."""
    origin = RequestOrigin(
        topic=RECORD.topic,
        partition=RECORD.partition,
        offset=RECORD.offset,
        timestamp_ms=RECORD.timestamp_ms,
        correlation_id="corr-1",
        reply_topic="team-replies",
    )

    outcome = Outcome.completed_for(_tracked_entry(origin), Run(state="success"))

    assert outcome.status is Status.COMPLETED
    assert outcome.error is None
    assert outcome.source == source_of(RECORD)
    assert (outcome.idempotency_key, outcome.correlation_id, outcome.dag_id) == (
        "k-1",
        "corr-1",
        "etl_daily",
    )
    assert (outcome.reply_topic, outcome.run_state, outcome.attempts) == (
        "team-replies",
        "success",
        0,
    )


def test_completed_for_an_entry_without_origin_uses_unknown_source_and_the_key() -> None:
    """Without an origin the reply has Kafka's unknown coordinates, the key as correlation id."""
    outcome = Outcome.completed_for(_tracked_entry(None), Run(state="failed"))

    assert outcome.source == UNKNOWN_SOURCE
    assert (outcome.correlation_id, outcome.reply_topic) == ("k-1", None)
    assert outcome.error_code is ErrorCode.RUN_FAILED
    assert outcome.run_state == "failed"


def test_salvage_echoes_only_valid_identifying_fields() -> None:
    """Salvaging keeps a valid key and dag_id and drops invalid ones."""
    assert salvage({"idempotency_key": "k", "dag_id": "d", "track": "yes"}) == RequestEcho(
        idempotency_key="k", correlation_id="k", dag_id="d"
    )
    assert salvage({"idempotency_key": "x" * 300, "dag_id": "a b"}) == RequestEcho()
    assert salvage(None, (("correlation-id", b"c-1"),)) == RequestEcho(correlation_id="c-1")
    assert salvage({"correlation_id": "own", "idempotency_key": 5}).correlation_id == "own"
