"""How SQLite's failures reach the worker: as ``StoreUnavailableError``, a reason to hold.

Once the store is open, a lock held past the busy timeout, a full disk, a read-only file or a
malformed page are conditions the operator can end; none of them says anything about the
request, so none may answer it ``internal_error`` (spec §3: an outage fails no request).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from consumer.errors import StoreUnavailableError


@contextmanager
def store_failures() -> Iterator[None]:
    """Raise every ``sqlite3.Error`` of the block as ``StoreUnavailableError``.

    Raises:
        StoreUnavailableError: SQLite failed; its message is kept.
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreUnavailableError(f"idempotency store failed: {exc}") from exc
