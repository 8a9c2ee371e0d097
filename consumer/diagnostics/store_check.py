"""Doctor's store check: the idempotency store opens, its schema is current, it takes a write."""

from __future__ import annotations

import sqlite3
import uuid

import psycopg

from consumer.diagnostics.result import CLIENT_ID, CheckResult
from consumer.errors import ConfigError, StoreUnavailableError, describe_error
from consumer.settings import Settings, env_name
from consumer.store import POSTGRES_SCHEMES, open_store
from consumer.store.redaction import display_url, mask_url_secrets


def check_store(settings: Settings) -> CheckResult:
    """The idempotency store opens and takes a write (a probe key, claimed then released).

    Opening creates or upgrades the schema (PostgreSQL: under an advisory lock, safe
    beside running replicas) and refuses one written by a newer release.

    Args:
        settings: the settings to check.

    Returns:
        The result; the remedy names ``TRIGGER_CONSUMER_STORE_URL``.
    """
    shared = settings.store_url.startswith(POSTGRES_SCHEMES)
    remedy = (
        f"check {env_name('store_url')} (host, database, sslmode) and "
        f"{env_name('store_password')}[_FILE]; the role needs CREATE on the database"
        if shared
        else f"set {env_name('store_url')} to a writable sqlite:/// path"
    )
    secret = settings.store_password
    password = None if secret is None else secret.get_secret_value()
    url = settings.store_url
    try:
        store = open_store(url, settings.dedup_retention, password=password)
    except ConfigError as exc:
        return CheckResult("store", False, mask_url_secrets(str(exc), url), remedy)
    where = display_url(url)  # a password in the URL's query string too (issue 28)
    try:
        key = f"{CLIENT_ID}-probe-{uuid.uuid4().hex}"
        store.mark_pending(key, fingerprint="doctor", dag_id="doctor", dag_run_id=key)
        store.release(key)
        version = store.schema_version() if hasattr(store, "schema_version") else None
    except (sqlite3.Error, psycopg.Error, OSError, ConfigError, StoreUnavailableError) as exc:
        said = mask_url_secrets(describe_error(exc), url)
        return CheckResult("store", False, f"{where}: {said}", remedy)
    finally:
        store.close()
    schema = f", schema version {version}" if version is not None else ""
    return CheckResult("store", True, f"{where} is writable{schema}")
