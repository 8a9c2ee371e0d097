"""Tests of consumer/airflow/failures.py: requests' exceptions and statuses, classified."""

from __future__ import annotations

import ssl

import pytest
import requests
import urllib3

from consumer.airflow.failures import classify_failure, is_transient
from consumer.errors import AirflowUnavailableError, ConfigError, ErrorCode

URL = "https://airflow.example:8443"


def test_tls_failure_is_a_fatal_config_error_naming_the_url() -> None:
    """An SSLError becomes ConfigError("TLS verification failed for <url>: ..."), never retried."""
    failure = classify_failure(requests.exceptions.SSLError("certificate verify failed"), URL)
    assert failure.fatal
    assert isinstance(failure.error, ConfigError)
    assert str(failure.error) == f"TLS verification failed for {URL}: certificate verify failed"


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (requests.ConnectTimeout(), "ConnectTimeout"),
        (requests.ReadTimeout(), "ReadTimeout"),
        (requests.ConnectionError(ConnectionRefusedError()), "ConnectFailed"),
        (
            requests.ConnectionError(
                urllib3.exceptions.MaxRetryError(
                    None,  # type: ignore[arg-type]
                    "/",
                    urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
                )
            ),
            "ConnectFailed",
        ),
        (requests.ConnectionError("connection reset by peer"), "ConnectionAborted"),
        (requests.exceptions.ChunkedEncodingError(), "ConnectionAborted"),
        (requests.exceptions.ContentDecodingError(), "ConnectionAborted"),
    ],
)
def test_transient_failures_name_their_outcome(
    exc: requests.RequestException, outcome: str
) -> None:
    """Timeouts and broken connections get the retry-history name and an unreachable error."""
    failure = classify_failure(exc, URL)
    assert (failure.outcome, failure.fatal) == (outcome, False)
    assert isinstance(failure.error, AirflowUnavailableError)
    assert failure.error.code is ErrorCode.AIRFLOW_UNAVAILABLE
    assert failure.error.message == f"could not reach {URL}: {type(exc).__name__}"
    assert failure.error.details == {"reachable": False}


@pytest.mark.parametrize(
    ("status", "transient"),
    [(200, False), (404, False), (409, False), (428, False), (429, True), (500, True), (503, True)],
)
def test_429_and_5xx_are_transient(status: int, transient: bool) -> None:
    """Only 429 and 5xx answers are worth retrying."""
    assert is_transient(status) is transient


def test_tls_handshake_cut_short_is_transient() -> None:
    """An SSLError caused by an EOF mid-handshake is a retried ``SSLError``, not fatal."""
    cut = requests.exceptions.SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    failure = classify_failure(cut, URL)
    assert (failure.outcome, failure.fatal) == ("SSLError", False)
    assert isinstance(failure.error, AirflowUnavailableError)


def test_certificate_verification_failure_stays_fatal() -> None:
    """An SSLError caused by SSLCertVerificationError is a fatal ConfigError."""
    bad = requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, "unable to get issuer"))
    assert classify_failure(bad, URL).fatal
