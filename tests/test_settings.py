"""Settings: environment, *_FILE secrets, TOML, durations, and errors that name the variable."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from consumer.errors import ConfigError
from consumer.settings import describe_settings, load_settings

SECRET = "pw-that-must-never-leak-7f3a"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without TRIGGER_CONSUMER_ variables, except the test harness's own."""
    for name in list(os.environ):
        if name.startswith("TRIGGER_CONSUMER_") and not name.startswith("TRIGGER_CONSUMER_TEST_"):
            monkeypatch.delenv(name)


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flat TRIGGER_CONSUMER_ names map to settings; lists are comma-separated."""
    monkeypatch.setenv("TRIGGER_CONSUMER_DAG_ALLOWLIST", "etl_*, reports_daily")
    monkeypatch.setenv("TRIGGER_CONSUMER_DEDUP_RETENTION", "3d")
    monkeypatch.setenv("TRIGGER_CONSUMER_MAX_IN_FLIGHT", "8")
    settings = load_settings()
    assert settings.dag_allowlist == ("etl_*", "reports_daily")
    assert settings.dedup_retention == timedelta(days=3)
    assert settings.max_in_flight == 8
    assert settings.request_topic == "dag-trigger-requests"


def test_unknown_variable_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt TRIGGER_CONSUMER_ variable fails start-up and is named."""
    monkeypatch.setenv("TRIGGER_CONSUMER_DAG_ALLOWLIST", "*")
    monkeypatch.setenv("TRIGGER_CONSUMER_DAGALLOWLIST", "x")
    with pytest.raises(ConfigError, match="TRIGGER_CONSUMER_DAGALLOWLIST"):
        load_settings()


def test_missing_allowlist_is_named() -> None:
    """Without a DAG allow-list the worker refuses to start and says which variable is missing."""
    with pytest.raises(ConfigError, match="TRIGGER_CONSUMER_DAG_ALLOWLIST"):
        load_settings(for_run=True)
    assert load_settings().dag_allowlist == ()  # other commands (send, validate) need none


def test_bad_value_is_named_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value of the wrong type names its variable and does not repeat the value."""
    monkeypatch.setenv("TRIGGER_CONSUMER_DAG_ALLOWLIST", "*")
    monkeypatch.setenv("TRIGGER_CONSUMER_MAX_IN_FLIGHT", "lots-and-lots")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "TRIGGER_CONSUMER_MAX_IN_FLIGHT" in str(caught.value)
    assert "lots-and-lots" not in str(caught.value)


def test_secret_from_file_never_shows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A password read from *_FILE is available to the code but absent from repr and str."""
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.setenv("TRIGGER_CONSUMER_DAG_ALLOWLIST", "*")
    monkeypatch.setenv("TRIGGER_CONSUMER_AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("TRIGGER_CONSUMER_AIRFLOW_PASSWORD_FILE", str(secret_file))
    settings = load_settings()
    assert settings.airflow_password is not None
    assert settings.airflow_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in str(settings.model_dump())


def test_toml_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Values come from the TOML file unless the environment sets them too."""
    config = tmp_path / "consumer.toml"
    config.write_text('dag_allowlist = ["etl_*"]\nmax_in_flight = 4\nreply_topic = "from-file"\n')
    monkeypatch.setenv("TRIGGER_CONSUMER_CONFIG_FILE", str(config))
    monkeypatch.setenv("TRIGGER_CONSUMER_MAX_IN_FLIGHT", "16")
    settings = load_settings()
    assert settings.dag_allowlist == ("etl_*",)
    assert settings.reply_topic == "from-file"
    assert settings.max_in_flight == 16


def test_sasl_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """SASL without a mechanism, user and password is a start-up error."""
    monkeypatch.setenv("TRIGGER_CONSUMER_DAG_ALLOWLIST", "*")
    monkeypatch.setenv("TRIGGER_CONSUMER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="kafka_sasl_mechanism"):
        load_settings()


def test_every_setting_is_described() -> None:
    """Each setting has a variable name, a default (or 'required') and a meaning for --help."""
    rows = describe_settings()
    by_name = {variable: default for variable, default, _ in rows}
    assert by_name["TRIGGER_CONSUMER_DAG_ALLOWLIST"] == "required"
    assert by_name["TRIGGER_CONSUMER_MAX_IN_FLIGHT"] == "64"
    assert all(meaning for _, _, meaning in rows)
    assert "TRIGGER_CONSUMER_AIRFLOW_PASSWORD[_FILE]" in {r[0] for r in rows}


def test_settings_error_carries_no_secret_in_its_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigError has no chained pydantic error, whose text would hold the input values."""
    monkeypatch.setenv("TRIGGER_CONSUMER_DAG_ALLOWLIST", "*")
    monkeypatch.setenv("TRIGGER_CONSUMER_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("TRIGGER_CONSUMER_KAFKA_SECURITY_PROTOCOL", "NOT_A_PROTOCOL")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    assert SECRET not in str(caught.value)
