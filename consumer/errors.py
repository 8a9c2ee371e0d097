"""Error codes of wire contract v1 (spec §2) and the exception tree that carries them.

The tree::

    TriggerConsumerError
    ├── Rejected                  bad input or policy: reply `rejected`, dead-letter, never retried
    ├── AirflowError              Airflow refused or was unreachable; `retryable` says which
    │   └── AirflowUnavailableError   transient, or the retry budget ran out
    ├── ConfigError               the worker's own configuration is wrong: stop consuming
    │   └── KafkaSecurityError        the brokers refused the SASL or TLS settings
    ├── KafkaUnreachableError     no broker answered the preflight connection (transient)
    ├── StoreUnavailableError     the idempotency store failed (locked, full, read-only): hold
    ├── SinkError                 the broker did not acknowledge a publish: send again
    ├── StoppingError             a request abandoned because the worker stops (no reply)
    ├── DispatcherClosedError     work submitted after shutdown began (a bug)
    ├── ReplayError               `replay` selected a topic or partition that does not exist
    ├── ReplayStalledError        `replay`'s reader stopped making progress
    └── ReplayWriteError          the broker did not acknowledge replayed records
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """Every stable error code of spec §2 (and of routes); the single source of the strings."""

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
    # routes (issue 15, beyond spec §2's table): events that are not requests
    INVALID_CLOUDEVENT = "invalid_cloudevent"
    NO_ROUTE_MATCHED = "no_route_matched"
    ROUTE_EXPRESSION_FAILED = "route_expression_failed"
    # deliberate re-runs (issue 29)
    RERUN_CONFLICT = "rerun_conflict"
    RERUN_NOT_ALLOWED = "rerun_not_allowed"
    NOT_BEFORE_TOO_FAR = "not_before_too_far"


class TriggerConsumerError(Exception):
    """Base of every error this package raises on purpose."""


class Rejected(TriggerConsumerError):  # noqa: N818 -- a control-flow signal, not an error (STYLE §8)
    """Raised when a message is unusable: bad input or outside policy; never retried.

    Only ``pipeline.attempt`` catches it; the pipeline turns it into a ``rejected`` reply plus a
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

    @property
    def attempts(self) -> int:
        """How many Airflow calls the failed request made (``details.attempts``; 1 if unsaid)."""
        attempts = self.details.get("attempts", 1)
        return attempts if isinstance(attempts, int) else 1


class AirflowUnavailableError(AirflowError):
    """Raised when Airflow could not be reached or answered with a transient failure.

    ``may_have_reached`` says whether a POST of the call may have reached Airflow although
    no answer came back (a read timeout, 502, 504): the run may exist (spec §3).
    """

    retryable: ClassVar[bool] = True

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        may_have_reached: bool = False,
    ):
        """Create the error.

        Args:
            code: ``airflow_unavailable``.
            message: what failed, bounded in length.
            details: machine-readable detail (attempts, history, reachable).
            may_have_reached: a POST of the call may have made the run.
        """
        super().__init__(code, message, details)
        self.may_have_reached = may_have_reached


class ConfigError(TriggerConsumerError):
    """Raised when the worker's configuration is wrong (bad credentials, TLS, settings).

    Operator action: fix the named setting and restart; the worker stops consuming rather
    than dead-letter the backlog.
    """


class KafkaSecurityError(ConfigError):
    """Raised when the brokers refuse this client's security settings (SASL or TLS).

    Operator action: change the settings ``remedy`` names and restart; retrying with the
    same settings cannot succeed.

    Attributes:
        problem: what the broker or the TLS check refused, never a secret.
        remedy: which settings to change.
    """

    def __init__(self, problem: str, remedy: str) -> None:
        """Create the error.

        Args:
            problem: what was refused.
            remedy: which settings to change.
        """
        super().__init__(f"{problem}: {remedy}")
        self.problem = problem
        self.remedy = remedy


class KafkaUnreachableError(TriggerConsumerError):
    """Raised when no bootstrap server completed a connection before the deadline.

    Transient: the brokers may be down or starting. Nothing says the settings are wrong.
    """


class StoreUnavailableError(TriggerConsumerError):
    """Raised when the idempotency store cannot be read or written (locked, disk full, read-only).

    Transient: the worker holds (stops fetching, reports unready) and retries with backoff;
    nothing is answered, dead-lettered or committed because of it (spec §3).

    Operator action: free the disk, end the process holding the database lock, or make the
    file writable; the worker resumes by itself.
    """


class SinkError(TriggerConsumerError):
    """Raised when the broker did not acknowledge every record of a publish in time.

    The request's offset is then not committed; the caller sends the unacked ones again.

    Attributes:
        unacked: positions (in the published sequence) of the records not acknowledged.
        too_large: those of them the broker refused as over the topic's size limit
            (sending them again unchanged can never succeed).
        topic_refused: those whose topic the broker refused (missing, not authorised, or
            no metadata in time), which may never succeed either.
        unsendable: those the producer refused to send at all (kafka-python raises more
            than ``KafkaError`` for a record it cannot encode), which never succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        unacked: list[int],
        too_large: list[int],
        topic_refused: list[int] | None = None,
        unsendable: list[int] | None = None,
    ) -> None:
        """Name what failed; ``message`` says why, without any record content."""
        super().__init__(message)
        self.unacked = tuple(unacked)
        self.too_large = frozenset(too_large)
        self.topic_refused = frozenset(topic_refused or ())
        self.unsendable = frozenset(unsendable or ())


class StoppingError(TriggerConsumerError):
    """Raised when a request waiting on Airflow is abandoned because the worker is stopping.

    Not an outcome: the request gets no reply and its offset is not committed, so the
    next owner of the partition processes it again.
    """


class DispatcherClosedError(TriggerConsumerError):
    """Raised when a task is submitted after ``shutdown`` began: a bug in the caller."""


class ReplayError(TriggerConsumerError):
    """Raised when the selection names a topic or partition that does not exist."""


class ReplayStalledError(TriggerConsumerError):
    """Raised when the reader makes no progress towards the captured end offsets."""


class ReplayWriteError(TriggerConsumerError):
    """Raised when the broker did not acknowledge every replayed record."""


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
