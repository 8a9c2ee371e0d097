"""Which SQLite errors are an outage the store holds, and which are bugs (by result code).

``sqlite3`` raises a locked database, a full disk and a syntax error alike as
``OperationalError``; the result code it attaches (``sqlite_errorcode``, Python 3.11+)
tells them apart. Errors the module raises itself carry none: misuse of a closed
connection or wrong bindings are bugs, an operational error without a code holds.
"""

from __future__ import annotations

import sqlite3

from consumer.store.failures import Failure

# primary result codes the operator ends and no request causes
HOLD_CODES = frozenset(
    {
        sqlite3.SQLITE_PERM,  # the file's permissions refuse the access
        sqlite3.SQLITE_BUSY,  # another process holds the lock past busy_timeout
        sqlite3.SQLITE_LOCKED,  # a table lock of another connection in this process
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,  # a read-only file, directory or mount
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,  # a malformed page, ended by a restore
        sqlite3.SQLITE_FULL,  # the disk (or max_page_count) is full
        sqlite3.SQLITE_CANTOPEN,  # the file or its WAL cannot be opened (now)
        sqlite3.SQLITE_PROTOCOL,  # a WAL lock race with another process
        sqlite3.SQLITE_NOTADB,
    }
)


def classify_sqlite_error(exc: Exception) -> Failure:
    """Tell an outage of the SQLite store from a bug.

    Args:
        exc: an error a store call raised.

    Returns:
        ``Failure.HOLD`` for the result codes above (extended codes count by their
        primary code) and for an ``OperationalError`` without a code; otherwise
        ``Failure.BUG`` (SQL errors, constraints, misuse, wrong bindings, too big).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return Failure.HOLD if isinstance(exc, sqlite3.OperationalError) else Failure.BUG
    return Failure.HOLD if code & 0xFF in HOLD_CODES else Failure.BUG
