"""Client builders: which connection options a kafka-python client starts from (no broker)."""

from __future__ import annotations

from consumer.kafka_io.clients import resolve_connection
from consumer.kafka_io.security import connection_options
from consumer.settings import Settings


def test_settings_are_turned_into_connection_options() -> None:
    """Given the settings, a builder starts from ``security.connection_options``."""
    settings = Settings.model_validate({"kafka_bootstrap_servers": "a:1,b:2"})

    assert resolve_connection(settings) == connection_options(settings)


def test_derived_options_are_reused_as_a_copy() -> None:
    """Given options already derived, a builder uses them without changing the caller's dict."""
    options = {"bootstrap_servers": ["a:1"], "security_protocol": "PLAINTEXT"}

    resolved = resolve_connection(options)
    resolved["client_id"] = "x"

    assert resolved == {**options, "client_id": "x"}
    assert "client_id" not in options
