"""Settings → kafka-python connection keyword arguments (PLAINTEXT, SSL, SASL PLAIN/SCRAM)."""

from __future__ import annotations

from typing import Any

from consumer.settings import Settings


def connection_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments every KafkaConsumer, KafkaProducer and admin client gets.

    Args:
        settings: the worker's settings.

    Returns:
        ``bootstrap_servers``, ``security_protocol`` and, when configured, the SSL and
        SASL options; the SASL password is unwrapped only here, at the client boundary.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_ssl_cafile is not None:
        options["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options
