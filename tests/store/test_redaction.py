"""Tests of consumer/store/redaction.py: a store URL's passwords never show."""

from __future__ import annotations

from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from consumer.errors import ConfigError
from consumer.settings import load_settings
from consumer.store import open_store
from consumer.store.redaction import display_url, mask_url_secrets

SECRET = "s3cret-Pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://:pw@h/db", "postgresql://:***@h/db"),
        ("postgresql://u@h/db?password=pw", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=verify-full&password=pw&application_name=x",
            "postgresql://u@h/db?sslmode=verify-full&password=***&application_name=x",
        ),
        ("postgresql://u@h/db?sslpassword=pw", "postgresql://u@h/db?sslpassword=***"),
        ("postgresql://u@h/db?pass%77ord=pw", "postgresql://u@h/db?pass%77ord=***"),
        ("postgresql://u@h/db?PASSWORD=pw", "postgresql://u@h/db?PASSWORD=***"),
        (
            "postgresql://u:pw@h1:5432,h2:5433/db?password=pw2",
            "postgresql://u:***@h1:5432,h2:5433/db?password=***",
        ),
        ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p/ss@h/db?x=1", "postgresql://u:***@h/db?x=1"),
        ("postgres://u@h?password=pw", "postgres://u@h?password=***"),
        (
            "postgresql://u@h/db?passfile=/home/u/.pgpass",
            "postgresql://u@h/db?passfile=/home/u/.pgpass",
        ),
        ("sqlite:///./trigger-consumer.db", "sqlite:///./trigger-consumer.db"),
    ],
)
def test_display_url_masks_every_password(url: str, shown: str) -> None:
    """User-info and query-string passwords (password, sslpassword) are masked; the rest is kept."""
    assert display_url(url) == shown


def test_mask_url_secrets_masks_the_urls_passwords_in_any_text() -> None:
    """A message quoting a password of the URL, raw or percent-decoded, shows ``***`` instead."""
    url = "postgresql://u:a%40b@h/db?password=p%26q&sslpassword=kk"
    text = "failed for a@b, a%40b, p&q, p%26q and kk"
    assert mask_url_secrets(text, url) == "failed for ***, ***, ***, *** and ***"


def test_a_query_string_password_never_shows_in_store_errors() -> None:
    """Opening a store whose URL has ``?password=`` fails without the password in the error."""
    url = f"postgresql://nobody@127.0.0.1:1/none?connect_timeout=2&password={SECRET}"
    with capture_logs() as logs, pytest.raises(ConfigError) as raised:
        open_store(url, timedelta(days=1))
    assert "TRIGGER_CONSUMER_STORE_URL" in str(raised.value)
    assert "password=***" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(raised.value)
    assert SECRET not in str(logs)


def test_settings_repr_never_shows_a_store_url_password() -> None:
    """``repr`` and ``str`` of the settings mask both kinds of store URL password."""
    url = f"postgresql://u:{SECRET}-1@h/db?sslmode=require&password={SECRET}-2"
    settings = load_settings(store_url=url)
    assert settings.store_url == url  # the worker connects with the real one
    for shown in (repr(settings), str(settings)):
        assert SECRET not in shown
        assert "store_url='postgresql://u:***@h/db?sslmode=require&password=***'" in shown
