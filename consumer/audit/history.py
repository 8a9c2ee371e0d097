"""The history an audit reconciles, as plain values: requests, answers, dead letters, runs.

Each value is read from one Kafka record, one store entry or one listed DAG run by a pure
function here (``request_of``, ``answer_of``, ``dead_letter_of``); ``consumer.audit.reading``
does the I/O and ``consumer.audit.reconcile`` judges the whole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from consumer.pipeline.dead_letter import (
    ERROR_CODE_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
)
from consumer.record import InboundRecord

Place: TypeAlias = tuple[str, int, int]
"""A record's place in Kafka: (topic, partition, offset)."""

RunRef: TypeAlias = tuple[str, str]
"""A DAG run: (dag_id, dag_run_id)."""


@dataclass(frozen=True)
class Request:
    """One record of the request topic in the audited range.

    Attributes:
        place: where it is.
        timestamp_ms: its record timestamp, or None.
        key: the ``idempotency_key`` of its JSON value, or None when unreadable.
        dag_id: the ``dag_id`` of its JSON value, or None.
        reply_topic: the ``reply_topic`` it named, or None.
    """

    place: Place
    timestamp_ms: int | None
    key: str | None
    dag_id: str | None
    reply_topic: str | None = None


@dataclass(frozen=True)
class Answer:
    """One reply record (any status, also one this release does not know).

    Attributes:
        source: the place of the request it answers (the reply's ``source``).
        status: the reply's ``status`` as written.
        key: the echoed idempotency key, or None.
        dag_id: the echoed DAG, or None.
        dag_run_id: the run the reply names, or None.
        error_code: ``error.code`` of a rejected or failed request, or None.
        topic: the reply topic it was read from.
    """

    source: Place
    status: str
    key: str | None
    dag_id: str | None
    dag_run_id: str | None
    error_code: str | None = None
    topic: str = ""

    @property
    def run(self) -> RunRef | None:
        """The run the reply names, when it names a DAG and a run."""
        if self.dag_id is None or self.dag_run_id is None:
            return None
        return (self.dag_id, self.dag_run_id)


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter record: the request it copies and why.

    Attributes:
        source: the place named by its ``source-*`` headers.
        error_code: its ``error-code`` header (``none`` without one).
    """

    source: Place
    error_code: str


@dataclass(frozen=True)
class Claim:
    """What the idempotency store holds for a key.

    Attributes:
        status: ``pending``, ``triggered``, ``duplicate`` or a status of a later release.
        dag_id: the DAG of the key's run.
        dag_run_id: the key's run.
    """

    status: str
    dag_id: str
    dag_run_id: str


@dataclass(frozen=True)
class Run:
    """A DAG run as Airflow listed it.

    Attributes:
        dag_id: the DAG.
        dag_run_id: the run's id.
        state: Airflow's state of it.
        created: when it was triggered, as far as Airflow tells (``run_after`` on Airflow 3,
            the earlier of logical and start date on Airflow 2), or None.
    """

    dag_id: str
    dag_run_id: str
    state: str
    created: datetime | None = None

    @property
    def ref(self) -> RunRef:
        """(dag_id, dag_run_id)."""
        return (self.dag_id, self.dag_run_id)


@dataclass(frozen=True)
class History:
    """Everything an audit read, for ``reconcile``.

    Attributes:
        requests: the requests in the range, in partition and offset order.
        answers: every reply read (also those to requests outside the range).
        dead_letters: every dead-letter record read.
        committed: the consumer group's committed offset per (topic, partition).
        claims: the store's entries of the requests' keys, by key.
        runs: the runs Airflow listed, by (dag_id, dag_run_id).
        orphans_since: a listed ``kafka__`` run made before this is never an orphan
            (it predates the range); None: no run is judged an orphan.
        orphans_until: nor one made after this (the range has an end); None: no end.
    """

    requests: tuple[Request, ...]
    answers: tuple[Answer, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()
    committed: Mapping[tuple[str, int], int] = field(default_factory=dict)
    claims: Mapping[str, Claim] = field(default_factory=dict)
    runs: Mapping[RunRef, Run] = field(default_factory=dict)
    orphans_since: datetime | None = None
    orphans_until: datetime | None = None


def request_of(record: InboundRecord) -> Request:
    """Read what an audit needs of a request record; never raises.

    Args:
        record: a record of the request topic.

    Returns:
        The request; fields the value does not hold (or holds with the wrong type) are None.
    """
    payload = _json_object(record.value)
    return Request(
        place=(record.topic, record.partition, record.offset),
        timestamp_ms=record.timestamp_ms,
        key=_text(payload.get("idempotency_key")),
        dag_id=_text(payload.get("dag_id")),
        reply_topic=_text(payload.get("reply_topic")),
    )


def answer_of(record: InboundRecord) -> Answer | None:
    """Read a reply record; None when it is no reply (no ``status`` or ``source``).

    Parsed leniently, not with ``contract.Reply``: a status a newer release added must
    not make the audit fail or skip the reply.

    Args:
        record: a record of a reply topic.

    Returns:
        The answer, or None.
    """
    payload = _json_object(record.value)
    status = _text(payload.get("status"))
    source = _place(payload.get("source"))
    if status is None or source is None:
        return None
    error = payload.get("error")
    return Answer(
        source=source,
        status=status,
        key=_text(payload.get("idempotency_key")),
        dag_id=_text(payload.get("dag_id")),
        dag_run_id=_text(payload.get("dag_run_id")),
        error_code=_text(error.get("code")) if isinstance(error, dict) else None,
        topic=record.topic,
    )


def dead_letter_of(record: InboundRecord) -> DeadLetter | None:
    """Read a dead-letter record's ``source-*`` and ``error-code`` headers.

    Args:
        record: a record of the dead-letter topic.

    Returns:
        The dead letter, or None when its source headers are missing or unreadable.
    """
    topic = _header(record, SOURCE_TOPIC_HEADER)
    partition = _header(record, SOURCE_PARTITION_HEADER)
    offset = _header(record, SOURCE_OFFSET_HEADER)
    if not topic or partition is None or offset is None:
        return None
    try:
        place = (topic, int(partition), int(offset))
    except ValueError:
        return None
    return DeadLetter(source=place, error_code=_header(record, ERROR_CODE_HEADER) or "none")


def _header(record: InboundRecord, name: str) -> str | None:
    raw = record.header(name)
    return None if raw is None else raw.decode("utf-8", "replace")


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        payload: Any = json.loads(value)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return {}
    return payload if isinstance(payload, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _place(value: Any) -> Place | None:
    if not isinstance(value, dict):
        return None
    topic, partition, offset = value.get("topic"), value.get("partition"), value.get("offset")
    if not isinstance(topic, str) or type(partition) is not int or type(offset) is not int:
        return None
    return (topic, partition, offset)
