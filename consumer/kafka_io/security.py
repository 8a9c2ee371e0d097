"""Settings → kafka-python connection keyword arguments (PLAINTEXT, SSL, SASL PLAIN/SCRAM)."""

from __future__ import annotations

import ssl
from typing import Any

from consumer.settings import Settings


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context for SSL and SASL_SSL: certificate and host name verified, TLS 1.2+.

    kafka-python's own default context is built with the deprecated ``PROTOCOL_TLS``
    (a DeprecationWarning on every connection) and only optionally verifies.

    Args:
        settings: the worker's settings; ``kafka_ssl_cafile`` replaces the system CAs.

    Returns:
        A client context trusting ``kafka_ssl_cafile``, or the system CAs when unset.

    Raises:
        OSError: the CA file cannot be read or holds no certificate (``ssl.SSLError``).
    """
    cafile = settings.kafka_ssl_cafile
    return ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)


def connection_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments every KafkaConsumer, KafkaProducer and admin client gets.

    Args:
        settings: the worker's settings.

    Returns:
        ``bootstrap_servers``, ``security_protocol`` and, when configured, the TLS context
        and SASL options; the SASL password is unwrapped only here, at the client boundary.

    Raises:
        OSError: the CA file of an SSL protocol cannot be read.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.endswith("SSL"):
        options["ssl_context"] = tls_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options
