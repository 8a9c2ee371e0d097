"""Wire contract v1 (spec §2): the trigger request and the reply, as pydantic models.

These models are the single source of truth for what a message may be; ``schemas/*.json``
are generated from them (``trigger-consumer schema``) and a test keeps the files in sync.
Validation with the right error codes lives in ``consumer.pipeline.validate``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from consumer.errors import ErrorCode
from consumer.record import Headers

SCHEMA_VERSION: Final = 1
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REQUEST_SCHEMA_FILE = "trigger-request.v1.json"
REPLY_SCHEMA_FILE = "reply.v1.json"

MAX_IDEMPOTENCY_KEY_CHARS = 256
MAX_DAG_ID_CHARS = 250
MAX_NOTE_CHARS = 1000
MAX_CORRELATION_ID_CHARS = 256
MAX_RERUN_ID_CHARS = 128
MAX_TOPIC_CHARS = 249
MAX_ECHO_CHARS = 100  # the most of one input value any error detail repeats
CORRELATION_ID_HEADER = "correlation-id"
RERUN_ID_HEADER = "rerun-id"  # stands for ``rerun: {"id": ...}`` (``replay --rerun``)

# C0, DEL and C1 (Unicode category Cc): never in keys, ids or headers
NO_CONTROL_CHARS_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
DAG_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
TOPIC_PATTERN = r"^[A-Za-z0-9._-]+$"
# the same rules for Python's re (fullmatch only); also refuses lone surrogates
_TEXT = re.compile(r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff]+")
_DAG_ID = re.compile(r"[A-Za-z0-9_.-]+")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


class Status(StrEnum):
    """The outcome of one request, as the reply's ``status`` field names it (spec §2)."""

    TRIGGERED = "triggered"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    ERROR = "error"
    COMPLETED = "completed"
    RERUN = "rerun"


def bounded(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut with an ellipsis.

    Args:
        text: any text taken from the input.
        limit: the most characters to keep.

    Returns:
        ``text`` itself when short enough, else its first ``limit`` characters plus "…".
    """
    return text if len(text) <= limit else text[:limit] + "…"


def is_idempotency_key(value: object) -> bool:
    """Tell whether a value is a valid idempotency key (1-256 characters, no control chars).

    Args:
        value: anything.

    Returns:
        True for a string the contract accepts as ``idempotency_key``.
    """
    return _is_text(value, MAX_IDEMPOTENCY_KEY_CHARS)


def is_correlation_id(value: object) -> bool:
    """Tell whether a value is a valid correlation id (1-256 characters, no control chars).

    Args:
        value: anything.

    Returns:
        True for a string the contract accepts as ``correlation_id``.
    """
    return _is_text(value, MAX_CORRELATION_ID_CHARS)


def is_dag_id(value: object) -> bool:
    """Tell whether a value is a valid dag_id (``[A-Za-z0-9_.-]``, 1-250 characters).

    Args:
        value: anything.

    Returns:
        True for a string the contract accepts as ``dag_id``.
    """
    if not isinstance(value, str) or len(value) > MAX_DAG_ID_CHARS:
        return False
    return _DAG_ID.fullmatch(value) is not None


def correlation_id_from_headers(headers: Headers) -> str | None:
    """Read the ``correlation-id`` header when it is a usable correlation id.

    Args:
        headers: the record's headers; the last ``correlation-id`` counts.

    Returns:
        The header as text when it is UTF-8 and a valid correlation id; otherwise None.
    """
    text = _header_text(headers, CORRELATION_ID_HEADER)
    return text if is_correlation_id(text) else None


def rerun_id_from_headers(headers: Headers) -> str | None:
    """Read the ``rerun-id`` header (``replay --rerun``) when it is a usable re-run id.

    Args:
        headers: the record's headers; the last ``rerun-id`` counts.

    Returns:
        The header as text when it is UTF-8 and a valid re-run id; otherwise None.
    """
    text = _header_text(headers, RERUN_ID_HEADER)
    return text if _is_text(text, MAX_RERUN_ID_CHARS) else None


def _header_text(headers: Headers, header: str) -> str | None:
    raw = next((value for name, value in reversed(headers) if name == header), None)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_text(value: object, max_chars: int) -> bool:
    if not isinstance(value, str) or len(value) > max_chars:
        return False
    return _TEXT.fullmatch(value) is not None


def parse_rfc3339(value: object) -> datetime | None:
    """Parse an RFC 3339 timestamp that carries a zone and normalise it to UTC.

    Args:
        value: the raw field value; None passes through.

    Returns:
        An aware datetime in UTC, or None.

    Raises:
        ValueError: when the value is not a string, has no zone, or is not a real instant.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    if _RFC3339.fullmatch(value) is None:
        raise ValueError("must be an RFC 3339 timestamp with a zone, like 2025-01-01T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper())
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"is not a valid instant: {exc}") from None


def exact_int(value: object) -> object:
    """Let only a real JSON integer through (not ``true`` or ``1.0``, which equal 1 in Python).

    Args:
        value: the raw field value.

    Returns:
        The value unchanged.

    Raises:
        ValueError: when the value is not an integer.
    """
    if type(value) is not int:
        raise ValueError("must be an integer")
    return value


Rfc3339 = Annotated[datetime | None, BeforeValidator(parse_rfc3339)]


class Rerun(BaseModel):
    """A deliberate re-run of the key's run (issue 29; the operator's ``reset_dag_run``).

    The key still names the run; ``id`` names the act, so a re-delivered re-run request
    clears the run once.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_RERUN_ID_CHARS,
            pattern=NO_CONTROL_CHARS_PATTERN,
            description="Names this re-run: one clear per key and id. 1-128 characters, "
            "no control characters.",
        ),
    ]
    only_failed: Annotated[
        bool, Field(description="Clear only the failed (and upstream-failed) tasks.")
    ] = False


class TriggerRequest(BaseModel):
    """A request to trigger one DAG run (wire contract v1, spec §2).

    Optional fields whose absence means "none" (logical_date, note, correlation_id,
    reply_topic) also accept null; fields with a value as default (conf, track,
    schema_version) do not. Unknown fields are rejected.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    idempotency_key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_CHARS,
            pattern=NO_CONTROL_CHARS_PATTERN,
            description="Names the request: one DAG run per key. 1-256 characters, "
            "no control characters.",
        ),
    ]
    dag_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_DAG_ID_CHARS,
            pattern=DAG_ID_PATTERN,
            description="The DAG to run: Airflow's dag_id charset, at most 250 characters.",
        ),
    ]
    conf: Annotated[
        dict[str, Any],
        Field(
            description="The DAG run's conf: a JSON object, bounded in size (64 KiB "
            "serialized by default) and depth (32 levels by default).",
        ),
    ] = Field(default_factory=dict)
    logical_date: Annotated[
        Rfc3339,
        Field(
            description="RFC 3339 timestamp with a zone; normalised to UTC. "
            "Absent: the run has no logical date of its own.",
        ),
    ] = None
    note: Annotated[
        str | None,
        Field(max_length=MAX_NOTE_CHARS, description="Stored as the DAG run's note."),
    ] = None
    not_before: Annotated[
        Rfc3339,
        Field(
            description="RFC 3339 timestamp with a zone: make the run at or after this time "
            "(at most MAX_NOT_BEFORE ahead, 7 days by default); the first reply comes then.",
        ),
    ] = None
    correlation_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_CORRELATION_ID_CHARS,
            pattern=NO_CONTROL_CHARS_PATTERN,
            description="Echoed in the reply. Default: the correlation-id header, "
            "else the idempotency key.",
        ),
    ] = None
    reply_topic: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_TOPIC_CHARS,
            pattern=TOPIC_PATTERN,
            description="Where to reply; only topics in the worker's allow-list.",
        ),
    ] = None
    track: Annotated[bool, Field(description="Also publish a reply when the run finishes.")] = False
    schema_version: Annotated[
        Literal[1],
        BeforeValidator(exact_int),
        Field(description="The wire contract version; only 1 exists."),
    ] = SCHEMA_VERSION
    rerun: Annotated[
        Rerun | None,
        Field(
            description="Re-run the key's run if it has one (cleared through Airflow's API); "
            "only for DAGs in the worker's re-run allow-list.",
        ),
    ] = None


class ErrorInfo(BaseModel):
    """Why a request was rejected or failed: a stable code plus detail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Annotated[ErrorCode, Field(description="A stable error code (README: Error codes).")]
    message: Annotated[str, Field(description="A human-readable sentence.")]
    details: Annotated[
        dict[str, Any], Field(description="Machine-readable detail: field paths, reasons.")
    ]


class Source(BaseModel):
    """Where the request came from: its Kafka coordinates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp: Annotated[
        datetime | None, Field(description="The record timestamp (UTC), or null when unknown.")
    ]


class Reply(BaseModel):
    """The answer to one request (spec §2); every field is always present, null when unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    idempotency_key: str | None
    correlation_id: str | None
    dag_id: str | None
    status: Status
    dag_run_id: str | None
    run_state: str | None
    logical_date: datetime | None
    run_url: str | None
    error: ErrorInfo | None
    source: Source
    attempts: Annotated[int, Field(ge=0, description="How many Airflow calls were made.")]
    processed_at: datetime
    worker: Annotated[str, Field(description="Which worker instance and version answered.")]


def json_schemas() -> dict[str, dict[str, Any]]:
    """Build the JSON Schemas of the contract, by the file name they are published under.

    Returns:
        ``{"trigger-request.v1.json": {...}, "reply.v1.json": {...}}``.
    """
    request = TriggerRequest.model_json_schema(mode="validation")
    reply = Reply.model_json_schema(mode="serialization")
    return {
        REQUEST_SCHEMA_FILE: {"$schema": JSON_SCHEMA_DIALECT, **request},
        REPLY_SCHEMA_FILE: {"$schema": JSON_SCHEMA_DIALECT, **reply},
    }


def render_json_schema(schema: dict[str, Any]) -> str:
    """Render a schema as the stable text stored in ``schemas/``.

    Args:
        schema: one value of ``json_schemas()``.

    Returns:
        Indented JSON with a trailing newline.
    """
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
