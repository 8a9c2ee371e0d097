"""How a store's failures reach the worker: as ``StoreUnavailableError``, a reason to hold.

Once a store is open, a lock held past the busy timeout, a full disk, a read-only file, a
malformed page, a lost database connection or an exhausted pool are conditions the operator
can end; none of them says anything about the request, so none may answer it
``internal_error`` (spec §3: an outage fails no request).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from consumer.errors import StoreUnavailableError


@contextmanager
def store_failures(*kinds: type[Exception]) -> Iterator[None]:
    """Raise every exception of ``kinds`` from the block as ``StoreUnavailableError``.

    Args:
        kinds: the database driver's error classes (``sqlite3.Error``, ``psycopg.Error``...).

    Raises:
        StoreUnavailableError: the database failed; its message is kept.
    """
    try:
        yield
    except kinds as exc:
        raise StoreUnavailableError(f"idempotency store failed: {exc}") from exc
