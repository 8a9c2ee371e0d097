"""The preflight connection against the secured broker: what passes, what is refused, and why."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trustme

from consumer.errors import ConfigError, KafkaSecurityError, KafkaUnreachableError
from consumer.kafka_io.preflight import check_connection
from consumer.settings import load_settings
from devstack.kafka_security import SecuredBroker
from tests.security.conftest import LISTENERS, listener_id, security_settings

TIMEOUT = 10.0


@pytest.mark.parametrize("listener", LISTENERS, ids=listener_id)
def test_every_listener_passes(
    secured_kafka: SecuredBroker, listener: tuple[str, str | None]
) -> None:
    """The right settings for each listener connect and name the broker that accepted them."""
    protocol, mechanism = listener
    settings = security_settings(secured_kafka, protocol, mechanism)
    assert check_connection(settings, timeout=TIMEOUT) == secured_kafka.endpoints[protocol]


@pytest.mark.parametrize(
    ("protocol", "mechanism", "user"),
    [
        ("SASL_PLAINTEXT", "PLAIN", "plain-client"),
        ("SASL_SSL", "SCRAM-SHA-256", "scram-client"),
        ("SASL_SSL", "SCRAM-SHA-512", "scram-client"),
    ],
)
def test_a_wrong_sasl_password_is_a_configuration_error(
    secured_kafka: SecuredBroker, protocol: str, mechanism: str, user: str
) -> None:
    """A refused password names the user, the mechanism and the settings, never the password."""
    wrong = "not-the-password-4f1c"
    settings = security_settings(secured_kafka, protocol, mechanism, password=wrong)
    with pytest.raises(KafkaSecurityError) as raised:
        check_connection(settings, timeout=TIMEOUT)
    error = raised.value
    assert isinstance(error, ConfigError)
    assert error.problem == (
        f"Kafka at {secured_kafka.endpoints[protocol]} refused the SASL credentials "
        f"for user {user} (mechanism {mechanism})"
    )
    assert error.remedy == (
        "check TRIGGER_CONSUMER_KAFKA_SASL_USERNAME and TRIGGER_CONSUMER_KAFKA_SASL_PASSWORD[_FILE]"
    )
    for secret in (wrong, secured_kafka.credentials(mechanism).password):
        assert secret not in str(error)


@pytest.mark.parametrize("trust", ["system", "other"])
def test_an_untrusted_certificate_names_the_ca_file(
    secured_kafka: SecuredBroker, tmp_path: Path, trust: str
) -> None:
    """A certificate from a CA the client does not trust names the CA file setting."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    settings = security_settings(
        secured_kafka, "SSL", trust="system" if trust == "system" else other
    )
    with pytest.raises(KafkaSecurityError) as raised:
        check_connection(settings, timeout=TIMEOUT)
    trusted = "the system CAs" if trust == "system" else str(other)
    assert raised.value.problem.startswith(
        f"Kafka at {secured_kafka.endpoints['SSL']} presented a TLS certificate that is not "
        "trusted (CERTIFICATE_VERIFY_FAILED: "
    )
    assert raised.value.problem.endswith(f"; trusting {trusted})")
    assert raised.value.remedy == (
        "set TRIGGER_CONSUMER_KAFKA_SSL_CAFILE to the CA that signed the brokers' certificate"
    )


def test_an_unreadable_ca_file_is_a_configuration_error(
    secured_kafka: SecuredBroker, tmp_path: Path
) -> None:
    """A CA file that holds no certificate fails before any connection, naming its setting."""
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    settings = security_settings(secured_kafka, "SSL", trust=empty)
    with pytest.raises(KafkaSecurityError) as raised:
        check_connection(settings, timeout=TIMEOUT)
    assert raised.value.problem.startswith(f"cannot load the Kafka CA file {empty} (")
    assert "TRIGGER_CONSUMER_KAFKA_SSL_CAFILE" in raised.value.remedy


def test_sasl_on_a_listener_without_sasl_names_the_protocol(
    secured_kafka: SecuredBroker,
) -> None:
    """SASL_SSL settings against the SSL listener are refused, naming the security protocol."""
    settings = security_settings(secured_kafka, "SASL_SSL", "PLAIN").model_copy(
        update={"kafka_bootstrap_servers": secured_kafka.endpoints["SSL"]}
    )
    with pytest.raises(KafkaSecurityError) as raised:
        check_connection(settings, timeout=TIMEOUT)
    assert "does not expect SASL" in raised.value.problem
    assert "TRIGGER_CONSUMER_KAFKA_SECURITY_PROTOCOL" in raised.value.remedy


def test_a_closed_port_is_unreachable_not_a_configuration_error(
    secured_kafka: SecuredBroker,
) -> None:
    """Every bootstrap server refusing the TCP connection is transient; each one is listed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers = f"127.0.0.1:{port},{secured_kafka.endpoints['PLAINTEXT']}"
    settings = load_settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")
    with pytest.raises(KafkaUnreachableError) as raised:
        check_connection(settings, timeout=TIMEOUT)
    message = str(raised.value)
    assert message.startswith(f"no Kafka broker accepted a connection: 127.0.0.1:{port} (")
    assert "ECONNREFUSED" in message
    # the next bootstrap server is tried when one is down
    fallback = load_settings(kafka_bootstrap_servers=servers)
    assert check_connection(fallback, timeout=TIMEOUT) == secured_kafka.endpoints["PLAINTEXT"]
