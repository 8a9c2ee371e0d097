"""Tests of consumer/airflow/connection.py: Settings mapped to the connection, secrets masked."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from consumer.airflow.connection import AirflowConnection
from consumer.settings import Settings


def test_from_settings_maps_every_airflow_setting() -> None:
    """URL, API, credentials, CA bundle, timeouts, budget and pool all come from Settings."""
    settings = Settings(
        airflow_url="https://airflow.example",
        airflow_api_version="v2",
        airflow_username="admin",
        airflow_password=SecretStr("pw"),
        airflow_ca_bundle=Path("/etc/ca.pem"),
        airflow_connect_timeout=timedelta(seconds=3),
        airflow_read_timeout=timedelta(seconds=40),
        airflow_retry_budget=timedelta(seconds=90),
        airflow_max_concurrency=10,
        track_concurrency=6,
    )
    connection = AirflowConnection.from_settings(settings)
    assert (connection.base_url, connection.api_version) == ("https://airflow.example", "v2")
    assert (connection.username, connection.password) == ("admin", settings.airflow_password)
    assert (connection.token, connection.ca_bundle) == (None, Path("/etc/ca.pem"))
    assert (connection.connect_timeout, connection.read_timeout) == (3.0, 40.0)
    assert connection.retry.max_elapsed == 90.0
    assert connection.pool_size == 16


def test_defaults_are_the_settings_defaults() -> None:
    """With default settings: 5 s connect, 30 s read, a 2 min budget, 8 + 4 pooled connections."""
    fields = Settings.model_fields
    connection = AirflowConnection.from_settings(Settings())
    assert connection.connect_timeout == fields["airflow_connect_timeout"].default.total_seconds()
    assert connection.read_timeout == fields["airflow_read_timeout"].default.total_seconds()
    assert connection.retry.max_elapsed == fields["airflow_retry_budget"].default.total_seconds()
    expected_pool = fields["airflow_max_concurrency"].default + fields["track_concurrency"].default
    assert connection.pool_size == expected_pool


def test_repr_never_shows_a_secret() -> None:
    """The password and the token are masked in repr and str."""
    with_password = AirflowConnection.from_settings(
        Settings(airflow_username="admin", airflow_password=SecretStr("pw-secret-1"))
    )
    with_token = AirflowConnection.from_settings(Settings(airflow_token=SecretStr("tok-secret-2")))
    for text in (repr(with_password), str(with_password), repr(with_token), str(with_token)):
        assert "pw-secret-1" not in text
        assert "tok-secret-2" not in text
    assert "admin" in repr(with_password)
