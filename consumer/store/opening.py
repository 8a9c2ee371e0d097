"""open_store: the idempotency store a ``TRIGGER_CONSUMER_STORE_URL`` names (spec §8).

Embedded SQLite for one replica, or PostgreSQL shared by a fleet of replicas; each backend
is imported only when its URL is opened.
"""

from __future__ import annotations

from datetime import timedelta

from consumer.errors import ConfigError
from consumer.store.protocol import Clock, IdempotencyStore

SQLITE_SCHEME = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(
    url: str,
    retention: timedelta,
    *,
    clock: Clock | None = None,
    password: str | None = None,
) -> IdempotencyStore:
    """Open the store named by ``url``, creating or upgrading its schema if needed.

    Supported: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
    ``sqlite:///:memory:`` (one process, gone at exit: tests and ``validate`` only), and
    ``postgresql://user@host:port/db?sslmode=verify-full&sslrootcert=…`` (any libpq
    connection URI; ``postgres://`` too) for a store shared by many replicas.

    Args:
        url: the store URL (``TRIGGER_CONSUMER_STORE_URL``).
        retention: how long keys are remembered (``TRIGGER_CONSUMER_DEDUP_RETENTION``).
        clock: the time source; the system clock in UTC by default.
        password: the PostgreSQL password (``TRIGGER_CONSUMER_STORE_PASSWORD[_FILE]``),
            kept out of the URL so that it never shows in logs.

    Returns:
        An open store.

    Raises:
        ConfigError: the URL is unsupported, the retention is not positive, or the
            database cannot be opened or was written by a newer release.
    """
    if url.startswith(POSTGRES_SCHEMES):
        # Imported here so that importing the Protocol never loads a backend.
        from consumer.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(url, retention, clock=clock, password=password)
    if not url.startswith(SQLITE_SCHEME):
        scheme = url.partition(":")[0] or url
        raise ConfigError(
            f"unsupported store URL scheme {scheme!r} in TRIGGER_CONSUMER_STORE_URL; "
            "use sqlite:///relative/path.db, sqlite:////absolute/path.db or postgresql://…"
        )
    path = url.removeprefix(SQLITE_SCHEME)
    if not path:
        raise ConfigError("TRIGGER_CONSUMER_STORE_URL names no database file after sqlite:///")
    from consumer.store.sqlite import SqliteStore  # noqa: PLC0415

    return SqliteStore(path, retention, clock=clock)
