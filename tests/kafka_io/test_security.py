"""connection_options: the kafka-python arguments each security protocol gets (no broker)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from consumer.kafka_io.security import connection_options
from consumer.settings import Settings


def _settings(**values: object) -> Settings:
    """Settings from explicit values only (the environment adds nothing these tests read)."""
    return Settings.model_validate({"kafka_bootstrap_servers": "a:1,b:2", **values})


def test_plaintext_has_no_tls_and_no_sasl() -> None:
    """PLAINTEXT passes the brokers and the protocol, nothing else."""
    assert connection_options(_settings()) == {
        "bootstrap_servers": ["a:1", "b:2"],
        "security_protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_tls_context_verifies_certificate_and_host(protocol: str, tmp_path: Path) -> None:
    """SSL protocols get a context that requires a valid certificate for the host, TLS 1.2+."""
    cafile = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(cafile))
    sasl = {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u", "kafka_sasl_password": "p"}
    settings = _settings(
        kafka_security_protocol=protocol,
        kafka_ssl_cafile=str(cafile),
        **(sasl if protocol == "SASL_SSL" else {}),
    )

    context = connection_options(settings)["ssl_context"]

    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1  # only the configured CA, not the system's


def test_sasl_options_unwrap_the_password_only_here() -> None:
    """SASL_PLAINTEXT passes mechanism, user and the plain password, and no TLS context."""
    settings = _settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="user",
        kafka_sasl_password="pw",
    )

    options = connection_options(settings)

    assert "ssl_context" not in options
    assert (
        options["sasl_mechanism"],
        options["sasl_plain_username"],
        options["sasl_plain_password"],
    ) == ("SCRAM-SHA-512", "user", "pw")


def test_unreadable_ca_file_is_an_os_error(tmp_path: Path) -> None:
    """A CA file that does not exist fails when the options are built (doctor reports OSError)."""
    settings = _settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "no.pem"))
    with pytest.raises(FileNotFoundError):
        connection_options(settings)
