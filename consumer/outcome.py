"""Outcome: what processing one record produced; read by the reply, dead-letter, store and metrics.

An ``Outcome`` is a plain frozen value. Its constructors say how it came about
(``triggered``, ``duplicate``, ``rejected``, ``failed``, ``internal_error``, and
``completed`` for a tracked run) and fill in
what the reply echoes: the request's identifying fields when they could be read, None
otherwise (spec §2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.contract import (
    ErrorInfo,
    Source,
    Status,
    TriggerRequest,
    bounded,
    correlation_id_from_headers,
    is_correlation_id,
    is_dag_id,
    is_idempotency_key,
)
from consumer.errors import AirflowError, ErrorCode, Rejected
from consumer.record import Headers, InboundRecord

MAX_ERROR_MESSAGE_CHARS = 1000
FAILED_RUN_STATES = frozenset({"failed"})


class RunView(Protocol):
    """What an outcome needs to know about an Airflow DAG run (``airflow.runs.DagRun`` fits)."""

    @property
    def dag_run_id(self) -> str:
        """The run's id."""

    @property
    def state(self) -> str:
        """Airflow's state of the run."""

    @property
    def logical_date(self) -> datetime | None:
        """The run's logical date in UTC, or None."""

    @property
    def run_url(self) -> str:
        """The run's page in the Airflow UI."""


def source_of(record: InboundRecord) -> Source:
    """Describe where a record came from, as the reply's ``source`` field.

    Args:
        record: the request record.

    Returns:
        Its topic, partition, offset and timestamp (None when unknown or out of range).
    """
    return source_at(record.topic, record.partition, record.offset, record.timestamp_ms)


def source_at(topic: str, partition: int, offset: int, timestamp_ms: int | None) -> Source:
    """Describe a request's Kafka coordinates as the reply's ``source`` field.

    Args:
        topic: the request's topic.
        partition: its partition.
        offset: its offset.
        timestamp_ms: its timestamp in milliseconds since the epoch, or None.

    Returns:
        The source; the timestamp is None when unknown or out of range.
    """
    return Source(
        topic=topic, partition=partition, offset=offset, timestamp=_timestamp_of(timestamp_ms)
    )


def _timestamp_of(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class RequestEcho:
    """The identifying fields a reply echoes: whatever could be read, None for the rest.

    Attributes:
        idempotency_key: the request's key, if it was readable and valid.
        correlation_id: the request's, else the header's, else the key.
        dag_id: the requested DAG, if it was readable and valid.
    """

    idempotency_key: str | None = None
    correlation_id: str | None = None
    dag_id: str | None = None


def salvage(payload: Mapping[str, Any] | None, headers: Headers = ()) -> RequestEcho:
    """Recover what a rejected message's reply can echo (spec §2: null when unreadable).

    Only values that pass their own field rule are echoed, so a hostile field never
    travels into a reply.

    Args:
        payload: the decoded object, or None when decoding failed.
        headers: the record's headers.

    Returns:
        The salvaged fields.
    """
    fields = payload if payload is not None else {}
    key = fields.get("idempotency_key")
    key = key if is_idempotency_key(key) else None
    dag_id = fields.get("dag_id")
    dag_id = dag_id if is_dag_id(dag_id) else None
    correlation_id = fields.get("correlation_id")
    if not is_correlation_id(correlation_id):
        correlation_id = correlation_id_from_headers(headers) or key
    return RequestEcho(idempotency_key=key, correlation_id=correlation_id, dag_id=dag_id)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    """The result of processing one request record.

    Attributes:
        status: triggered, duplicate, rerun, rejected, error or completed.
        source: the request's Kafka coordinates.
        idempotency_key: the request's key; None when it could not be read.
        correlation_id: echoed in the reply and its ``correlation-id`` header.
        dag_id: the requested DAG; None when it could not be read.
        reply_topic: the topic the request asked to be answered on (allowed by policy),
            or None for the default reply topic.
        track: whether the request asked for a completion reply.
        error: code, message and details for rejected and error outcomes.
        dag_run_id: the Airflow run the key maps to, when known.
        run_state: Airflow's state of that run, when known.
        logical_date: the run's logical date (UTC), when known.
        run_url: the run's page in the Airflow UI, when known.
        attempts: how many Airflow calls were made.
        processed_at: when processing finished (UTC).
    """

    status: Status
    source: Source
    idempotency_key: str | None = None
    correlation_id: str | None = None
    dag_id: str | None = None
    reply_topic: str | None = None
    track: bool = False
    error: ErrorInfo | None = None
    dag_run_id: str | None = None
    run_state: str | None = None
    logical_date: datetime | None = None
    run_url: str | None = None
    attempts: int = 0
    processed_at: datetime = field(default_factory=_now)

    @property
    def error_code(self) -> ErrorCode | None:
        """The error code, or None for an outcome without error."""
        return None if self.error is None else self.error.code

    @classmethod
    def triggered(
        cls, record: InboundRecord, request: TriggerRequest, run: RunView, *, attempts: int
    ) -> Outcome:
        """Build the outcome of a request that created its DAG run (spec §3).

        Args:
            record: the request record.
            request: the validated request.
            run: the run Airflow created.
            attempts: how many Airflow calls were made.

        Returns:
            A ``triggered`` outcome.
        """
        return cls._for_request(Status.TRIGGERED, record, request, attempts=attempts, run=run)

    @classmethod
    def duplicate(
        cls, record: InboundRecord, request: TriggerRequest, run: RunView, *, attempts: int
    ) -> Outcome:
        """Build the outcome of a request whose key already had a run made by another request.

        Args:
            record: the request record.
            request: the validated request.
            run: the existing run, with its current state.
            attempts: how many Airflow calls were made (0 when the store answered).

        Returns:
            A ``duplicate`` outcome.
        """
        return cls._for_request(Status.DUPLICATE, record, request, attempts=attempts, run=run)

    @classmethod
    def rerun(
        cls, record: InboundRecord, request: TriggerRequest, run: RunView, *, attempts: int
    ) -> Outcome:
        """Build the outcome of a request that re-ran its key's run (issue 29).

        Args:
            record: the request record.
            request: the validated request, with ``rerun``.
            run: the run as Airflow reports it after the clear (same ``dag_run_id``).
            attempts: how many Airflow calls were made.

        Returns:
            A ``rerun`` outcome.
        """
        return cls._for_request(Status.RERUN, record, request, attempts=attempts, run=run)

    @classmethod
    def rejected(
        cls,
        record: InboundRecord,
        rejected: Rejected,
        *,
        request: TriggerRequest | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Build the outcome of bad input or a policy refusal (never retried).

        Args:
            record: the request record.
            rejected: the signal a stage raised.
            request: the validated request, when the rejection came after validation
                (policy, dedup); its reply topic is used unless that was the refusal.
            payload: the decoded object, when validation refused it; valid identifying
                fields are salvaged from it for the reply.

        Returns:
            A ``rejected`` outcome.
        """
        error = ErrorInfo(
            code=rejected.code,
            message=bounded(rejected.message, MAX_ERROR_MESSAGE_CHARS),
            details=rejected.details,
        )
        if request is None:
            return cls._salvaged(Status.REJECTED, record, error, payload)
        outcome = cls._for_request(Status.REJECTED, record, request, error=error)
        if rejected.code is ErrorCode.REPLY_TOPIC_NOT_ALLOWED:
            outcome = replace(outcome, reply_topic=None)
        return outcome

    @classmethod
    def failed(
        cls, record: InboundRecord, error: AirflowError, *, request: TriggerRequest, attempts: int
    ) -> Outcome:
        """Build the outcome of a request Airflow refused or that outlasted its retries.

        Args:
            record: the request record.
            error: the Airflow error (``dag_not_found``, ``airflow_rejected``...).
            request: the validated request.
            attempts: how many Airflow calls were made.

        Returns:
            An ``error`` outcome.
        """
        info = ErrorInfo(
            code=error.code,
            message=bounded(error.message, MAX_ERROR_MESSAGE_CHARS),
            details=error.details,
        )
        return cls._for_request(Status.ERROR, record, request, error=info, attempts=attempts)

    @classmethod
    def internal_error(
        cls,
        record: InboundRecord,
        exc: BaseException,
        *,
        request: TriggerRequest | None = None,
        payload: Mapping[str, Any] | None = None,
        attempts: int = 0,
    ) -> Outcome:
        """Build the outcome of a bug met while handling the record (logged elsewhere).

        The reply names only the exception type: its text may hold anything.

        Args:
            record: the request record.
            exc: the unexpected exception.
            request: the validated request, if processing got that far.
            payload: the decoded object, if processing got that far.
            attempts: how many Airflow calls were made.

        Returns:
            An ``error`` outcome with code ``internal_error``.
        """
        kind = type(exc).__name__
        error = ErrorInfo(
            code=ErrorCode.INTERNAL_ERROR,
            message=f"internal error ({kind}) while handling this message",
            details={"exception": kind},
        )
        if request is None:
            return replace(cls._salvaged(Status.ERROR, record, error, payload), attempts=attempts)
        return cls._for_request(Status.ERROR, record, request, error=error, attempts=attempts)

    def completed(self, run: RunView) -> Outcome:
        """Build the follow-up outcome of a tracked run that reached a final state.

        Args:
            run: the run in its final state.

        Returns:
            A ``completed`` outcome for the same request; with error ``run_failed`` when
            the run ended failed (``run_state`` says which state).
        """
        error = None
        if run.state in FAILED_RUN_STATES:
            error = ErrorInfo(
                code=ErrorCode.RUN_FAILED,
                message=f"DAG run {run.dag_run_id} ended {run.state}",
                details={"run_state": run.state},
            )
        return replace(
            self,
            status=Status.COMPLETED,
            error=error,
            dag_run_id=run.dag_run_id,
            run_state=run.state,
            logical_date=run.logical_date,
            run_url=run.run_url,
            processed_at=_now(),
        )

    @classmethod
    def _for_request(
        cls,
        status: Status,
        record: InboundRecord,
        request: TriggerRequest,
        *,
        error: ErrorInfo | None = None,
        attempts: int = 0,
        run: RunView | None = None,
    ) -> Outcome:
        """The outcome echoing the request, and its run when there is one."""
        return cls(
            status=status,
            source=source_of(record),
            idempotency_key=request.idempotency_key,
            correlation_id=request.correlation_id,
            dag_id=request.dag_id,
            reply_topic=request.reply_topic,
            track=request.track,
            error=error,
            dag_run_id=run.dag_run_id if run else None,
            run_state=run.state if run else None,
            logical_date=run.logical_date if run else None,
            run_url=run.run_url if run else None,
            attempts=attempts,
        )

    @classmethod
    def _salvaged(
        cls,
        status: Status,
        record: InboundRecord,
        error: ErrorInfo,
        payload: Mapping[str, Any] | None,
    ) -> Outcome:
        echo: RequestEcho = salvage(payload, record.headers)
        return cls(
            status=status,
            source=source_of(record),
            idempotency_key=echo.idempotency_key,
            correlation_id=echo.correlation_id,
            dag_id=echo.dag_id,
            error=error,
        )
