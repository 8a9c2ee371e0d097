"""Store faults on the real devstack PostgreSQL: a database whose new sessions are read-only.

This is how a primary that turned read-only looks to the store (a failover behind a stale
address, a managed service's storage-full mode): the pool's sessions end, and every new
one answers writes with ``read_only_sql_transaction`` (SQLSTATE 25006).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


def set_read_only(database_url: str, read_only: bool) -> None:
    """Make new sessions of the database read-only (or writable), then end the current ones.

    Args:
        database_url: the database, as the store connects to it.
        read_only: whether new sessions may only read.
    """
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SET default_transaction_read_only = off")  # this session must write
        name = admin.info.dbname
        setting, suffix = ("SET", " = on") if read_only else ("RESET", "")
        admin.execute(f'ALTER DATABASE "{name}" {setting} default_transaction_read_only{suffix}')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@contextmanager
def read_only(database_url: str) -> Iterator[None]:
    """The database is read-only inside the block and writable again after it."""
    set_read_only(database_url, True)
    try:
        yield
    finally:
        set_read_only(database_url, False)
