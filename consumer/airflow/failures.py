"""How a failed call to Airflow is classified: requests' exceptions, and transient statuses.

``classify_failure`` is the one mapping from a ``requests`` exception to ours. It gives both
the name the retry history records (``ConnectFailed``, ``ConnectTimeout``, ``ReadTimeout``,
``ConnectionAborted``, ``SSLError``) and the exception a caller that does not retry raises:
``ConfigError`` for a certificate that fails verification or a server that does not speak TLS
(fatal, spec §3), ``AirflowUnavailableError`` otherwise — a handshake cut short (a load
balancer restarting Airflow) is retried like any dropped connection::

    try:
        answer = session.post(url, timeout=timeout)
    except NO_ANSWER_ERRORS as exc:
        raise classify_failure(exc, url).error from None
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import requests
import urllib3

from consumer.errors import AirflowUnavailableError, ConfigError, ErrorCode

HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500

# requests' exceptions raised when no answer came (SSLError is a ConnectionError)
NO_ANSWER_ERRORS = (requests.ConnectionError, requests.Timeout)
# ... and those of an answer broken off mid-body, which the retry loop also retries
CALL_ERRORS = (
    *NO_ANSWER_ERRORS,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# outcomes after which no connection was made, so nothing reached Airflow
UNREACHABLE = frozenset({"ConnectFailed", "ConnectTimeout"})
# what OpenSSL says when retrying cannot help: the certificate, or no TLS on the other side
FATAL_TLS_MARKS = (
    "certificate verify failed",
    "wrong version number",
    "unknown protocol",
    "packet length too long",
)


@dataclass(frozen=True)
class RequestFailure:
    """What one failed call means to the client.

    Attributes:
        outcome: the attempt's name in a retry history (``SSLError`` for a TLS failure).
        error: what a caller that does not retry raises: ``ConfigError`` for a TLS
            verification failure, ``AirflowUnavailableError`` (``airflow_unavailable``)
            otherwise.
    """

    outcome: str
    error: ConfigError | AirflowUnavailableError

    @property
    def fatal(self) -> bool:
        """True for a TLS verification failure: retrying cannot help, the worker must stop."""
        return isinstance(self.error, ConfigError)


def classify_failure(exc: requests.RequestException, url: str) -> RequestFailure:
    """Map a ``requests`` exception to the client's outcome and error.

    Args:
        exc: one of ``CALL_ERRORS``, raised calling ``url``.
        url: what was called, for the message.

    Returns:
        The failure's outcome name and the exception for it.
    """
    if isinstance(exc, requests.exceptions.SSLError) and tls_fatal(exc):
        return RequestFailure("SSLError", ConfigError(f"TLS verification failed for {url}: {exc}"))
    unreachable = AirflowUnavailableError(
        ErrorCode.AIRFLOW_UNAVAILABLE,
        f"could not reach {url}: {type(exc).__name__}",
        {"reachable": False},
    )
    outcome = "SSLError" if isinstance(exc, requests.exceptions.SSLError) else _outcome(exc)
    return RequestFailure(outcome, unreachable)


def tls_fatal(exc: BaseException) -> bool:
    """Whether a TLS failure is one retrying cannot mend (verification, or no TLS at all).

    Args:
        exc: a ``requests`` ``SSLError``, whose causes are searched.

    Returns:
        True for a certificate that fails verification or a peer that does not speak TLS;
        False for a handshake cut short (EOF, reset), which a retry may get past.
    """
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if isinstance(current, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionError):
            return False
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(current.args)
    text = str(exc).lower()
    return any(mark in text for mark in FATAL_TLS_MARKS)


def _outcome(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "ConnectTimeout"
    if isinstance(exc, requests.Timeout):
        return "ReadTimeout"
    if isinstance(exc, requests.ConnectionError):
        return _connection_outcome(exc)
    return "ConnectionAborted"


def _connection_outcome(exc: requests.ConnectionError) -> str:
    """``ConnectFailed`` when no connection was made (nothing sent), else ``ConnectionAborted``."""
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    if isinstance(reason, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
        return "ConnectFailed"
    return "ConnectionAborted"


def is_transient(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 429 or any 5xx.

    Args:
        status: the answer's status code.

    Returns:
        True for 429 and 5xx.
    """
    return status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR
