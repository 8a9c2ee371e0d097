"""Preflight: one connection to the brokers before any Kafka client starts (spec §3, §5).

A wrong SASL password or an untrusted broker certificate must stop ``run``, ``send``,
``replay`` and ``doctor`` with a message naming the setting to fix. kafka-python does not
say so itself: after a refused SASL authentication it only logs the reason and reconnects
for ever (its admin client then reports an unrelated broker-version error), and a failed
certificate check escapes from ``BrokerConnection.connect`` wherever a client called it.
So the preflight drives one ``BrokerConnection`` per bootstrap server itself and keeps
the error the connection was closed with.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

from kafka.cluster import collect_hosts
from kafka.conn import BrokerConnection, ConnectionStates
from kafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from consumer.errors import (
    KafkaSecurityError,
    KafkaUnreachableError,
    describe_error,
)
from consumer.kafka_io.security import connection_options
from consumer.settings import Settings, env_name

DEFAULT_TIMEOUT = 10.0  # seconds for the whole preflight, over every bootstrap server
CLIENT_ID = "trigger-consumer-preflight"
STEP = 0.01  # seconds between connection steps: the TCP connect and ApiVersions are async


class _ProbeConnection(BrokerConnection):  # type: ignore[misc]  # kafka-python is untyped
    """A ``BrokerConnection`` that remembers why it was first closed (kafka-python only logs it)."""

    closed_with: BaseException | None = None

    def close(self, error: BaseException | None = None) -> None:
        if error is not None and self.closed_with is None and not self.disconnected():
            self.closed_with = error
        super().close(error)


def check_connection(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Connect to the bootstrap servers in turn until one completes TLS and SASL.

    Args:
        settings: the connection settings, as every Kafka client gets them.
        timeout: seconds for all attempts together.

    Returns:
        The ``host:port`` that accepted the connection.

    Raises:
        KafkaSecurityError: a broker refused the SASL credentials, mechanism or protocol,
            or its certificate is not trusted (or the CA file is unreadable).
        KafkaUnreachableError: no broker completed a connection within ``timeout``.
    """
    try:
        options = connection_options(settings)
    except OSError as exc:
        raise KafkaSecurityError(
            f"cannot load the Kafka CA file {settings.kafka_ssl_cafile} ({exc})",
            f"set {env_name('kafka_ssl_cafile')} to a readable PEM file of CA certificates",
        ) from exc
    servers = options.pop("bootstrap_servers")
    deadline = time.monotonic() + timeout
    reasons = []
    for host, port, afi in collect_hosts(servers, randomize=False):
        server = f"{host}:{port}"
        error = _connect(host, port, afi, options, deadline)
        if error is None:
            return server
        refusal = _refusal(error, server, settings)
        if refusal is not None:
            raise refusal from error
        reasons.append(f"{server} ({describe_error(error)})")
        if time.monotonic() >= deadline:
            break
    raise KafkaUnreachableError(f"no Kafka broker accepted a connection: {'; '.join(reasons)}")


def _connect(
    host: str, port: int, afi: int, options: dict[str, Any], deadline: float
) -> BaseException | None:
    """One connection attempt; None when it completed, else why it did not."""
    timeout = max(deadline - time.monotonic(), 0.001)
    remaining_ms = int(timeout * 1000)
    connection = _ProbeConnection(
        host,
        port,
        afi,
        **options,
        client_id=CLIENT_ID,
        request_timeout_ms=remaining_ms,
        api_version_auto_timeout_ms=remaining_ms,
    )
    try:
        while time.monotonic() < deadline:
            state = connection.connect()
            if state is ConnectionStates.CONNECTED:
                return None
            if state is ConnectionStates.DISCONNECTED:
                break
            time.sleep(STEP)
    except (OSError, KafkaError) as exc:  # a failed certificate check is raised, not logged
        return exc
    finally:
        connection.close()
    reason: BaseException = connection.closed_with or KafkaTimeoutError(
        f"no answer within {timeout:g} s"
    )
    return reason


def _refusal(error: BaseException, server: str, settings: Settings) -> KafkaSecurityError | None:
    """The configuration error ``error`` stands for, or None when it may be transient."""
    protocol = settings.kafka_security_protocol
    if isinstance(error, SaslAuthenticationFailedError):
        return KafkaSecurityError(
            f"Kafka at {server} refused the SASL credentials for user "
            f"{settings.kafka_sasl_username} (mechanism {settings.kafka_sasl_mechanism})",
            f"check {env_name('kafka_sasl_username')} and {env_name('kafka_sasl_password')}[_FILE]",
        )
    if isinstance(error, UnsupportedSaslMechanismError):
        return KafkaSecurityError(
            f"Kafka at {server} does not offer SASL mechanism {settings.kafka_sasl_mechanism}",
            f"set {env_name('kafka_sasl_mechanism')} to a mechanism the brokers enable",
        )
    if isinstance(error, IllegalSaslStateError):
        return KafkaSecurityError(
            f"Kafka at {server} does not expect SASL ({protocol}) on this listener",
            f"check {env_name('kafka_security_protocol')} against the listener of "
            f"{env_name('kafka_bootstrap_servers')}",
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        trusted = settings.kafka_ssl_cafile or "the system CAs"
        if "mismatch" in str(error.verify_message):
            remedy = (
                f"list the brokers in {env_name('kafka_bootstrap_servers')} by a name their "
                f"certificate carries, or check {env_name('kafka_ssl_cafile')}"
            )
        else:
            remedy = (
                f"set {env_name('kafka_ssl_cafile')} to the CA that signed the brokers' certificate"
            )
        return KafkaSecurityError(
            f"Kafka at {server} presented a TLS certificate that is not trusted "
            f"({error.reason}: {error.verify_message}; trusting {trusted})",
            remedy,
        )
    if isinstance(error, ssl.SSLError):
        return KafkaSecurityError(
            f"TLS with Kafka at {server} failed ({error.reason or error})",
            f"check that {env_name('kafka_security_protocol')}={protocol} matches the listener, "
            f"and {env_name('kafka_ssl_cafile')}",
        )
    return None
