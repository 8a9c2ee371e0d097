"""Which PostgreSQL errors are an outage the store holds, and which are bugs (by SQLSTATE).

psycopg's exception classes do not draw this line: a read-only primary (25006) and
data corruption (XX001) are ``InternalError``, a revoked grant (42501) is a
``ProgrammingError``, while an index row too large (54000) is an ``OperationalError``.
The SQLSTATE the server sent does draw it; without one, no server answered.
"""

from __future__ import annotations

import psycopg

from consumer.store.failures import Failure

# SQLSTATE classes (their first two characters) the operator ends and no request causes
HOLD_CLASSES = frozenset(
    {
        "08",  # connection exception: the server went away or refuses connections
        "3D",  # invalid catalog name: the database is gone (a restore, a stale address)
        "28",  # invalid authorization: a password rotated under the pool
        "40",  # transaction rollback: serialization failure, deadlock; a retry passes
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "57",  # operator intervention: admin or crash shutdown, starting up, query canceled
        "58",  # system error: an I/O error below PostgreSQL
        "XX",  # internal error: data or index corruption, ended by a repair or a restore
    }
)
HOLD_STATES = frozenset(
    {
        "25006",  # read_only_sql_transaction: a standby or a storage-full primary
        "42501",  # insufficient_privilege: a revoked grant, not the request's fault
        "42P01",  # undefined_table: a restore without the store's tables, not a request's
        "55P03",  # lock_not_available: lock_timeout behind another session's lock
    }
)


def classify_postgres_error(exc: Exception) -> Failure:
    """Tell an outage of the PostgreSQL store from a bug.

    Args:
        exc: an error a store call raised.

    Returns:
        ``Failure.HOLD`` for the SQLSTATEs above, and for an ``OperationalError`` without
        one (the connection broke, or the pool had no connection in time); otherwise
        ``Failure.BUG`` (data and SQL errors: classes 22, 23, 42, 54...).
    """
    state = getattr(exc, "sqlstate", None)
    if not isinstance(state, str):
        return Failure.HOLD if isinstance(exc, psycopg.OperationalError) else Failure.BUG
    if state[:2] in HOLD_CLASSES or state in HOLD_STATES:
        return Failure.HOLD
    return Failure.BUG
