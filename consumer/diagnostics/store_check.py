"""Doctor's store check: the idempotency store opens and takes a write."""

from __future__ import annotations

import sqlite3
import uuid

from consumer.diagnostics.result import CLIENT_ID, CheckResult
from consumer.errors import ConfigError, describe_error
from consumer.settings import Settings, env_name
from consumer.store import open_store


def check_store(settings: Settings) -> CheckResult:
    """The idempotency store opens and takes a write (a probe key, claimed then released).

    Args:
        settings: the settings to check.

    Returns:
        The result; the remedy names ``TRIGGER_CONSUMER_STORE_URL``.
    """
    remedy = f"set {env_name('store_url')} to a writable sqlite:/// path"
    try:
        store = open_store(settings.store_url, settings.dedup_retention)
    except ConfigError as exc:
        return CheckResult("store", False, str(exc), remedy)
    try:
        key = f"{CLIENT_ID}-probe-{uuid.uuid4().hex}"
        store.mark_pending(key, fingerprint="doctor", dag_id="doctor", dag_run_id=key)
        store.release(key)
    except (sqlite3.Error, OSError, ConfigError) as exc:
        return CheckResult("store", False, f"{settings.store_url}: {describe_error(exc)}", remedy)
    finally:
        store.close()
    return CheckResult("store", True, f"{settings.store_url} is writable")
