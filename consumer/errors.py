"""Error codes of wire contract v1 (spec §2) and the exception tree that carries them.

The tree::

    TriggerConsumerError
    ├── Rejected          bad input or policy: reply `rejected`, dead-letter, never retried
    ├── AirflowError      Airflow refused or was unreachable; `retryable` says which
    └── ConfigError       the worker's own configuration is wrong: stop consuming
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """Every stable error code of spec §2; the single source of the code strings."""

    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_FIELDS = "unknown_fields"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    CONF_TOO_LARGE = "conf_too_large"
    DAG_NOT_ALLOWED = "dag_not_allowed"
    REPLY_TOPIC_NOT_ALLOWED = "reply_topic_not_allowed"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    DAG_NOT_FOUND = "dag_not_found"
    AIRFLOW_REJECTED = "airflow_rejected"
    LOGICAL_DATE_CONFLICT = "logical_date_conflict"
    AIRFLOW_UNAVAILABLE = "airflow_unavailable"
    RUN_FAILED = "run_failed"
    INTERNAL_ERROR = "internal_error"


class TriggerConsumerError(Exception):
    """Base of every error this package raises on purpose."""


class Rejected(TriggerConsumerError):  # noqa: N818 -- a control-flow signal, not an error (STYLE §8)
    """Raised when a message is unusable: bad input or outside policy; never retried.

    Only ``pipeline.screen`` catches it; the pipeline turns it into a ``rejected`` reply plus a
    dead-letter record.
    """

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        """Create the signal.

        Args:
            code: the stable error code of spec §2.
            message: a human-readable sentence; never echoes more than a bounded slice of input.
            details: machine-readable detail (field paths, reasons).
        """
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}


class AirflowError(TriggerConsumerError):
    """Raised when Airflow refuses a request or cannot be reached.

    ``retryable`` is true for transient failures (connection error, timeout, 429, 5xx).
    """

    retryable: ClassVar[bool] = False

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        """Create the error.

        Args:
            code: the stable error code of spec §2.
            message: what Airflow said, bounded in length.
            details: machine-readable detail (HTTP status, Airflow's body).
        """
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}


class AirflowUnavailableError(AirflowError):
    """Raised when Airflow could not be reached or answered with a transient failure."""

    retryable: ClassVar[bool] = True


class ConfigError(TriggerConsumerError):
    """Raised when the worker's configuration is wrong (bad credentials, TLS, settings).

    Operator action: fix the named setting and restart; the worker stops consuming rather
    than dead-letter the backlog.
    """


def describe_error(exc: BaseException) -> str:
    """An exception as ``Type: message`` (the type alone when the message adds nothing).

    Args:
        exc: a client error.

    Returns:
        One line for a detail.
    """
    name, text = type(exc).__name__, str(exc)
    if text.startswith(name):  # kafka-python's errors name their class themselves
        return text
    return f"{name}: {text}" if text else name
