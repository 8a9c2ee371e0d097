"""How a store's failures reach the worker: an outage as ``StoreUnavailableError``, a bug as is.

Once a store is open, a lock held past the busy timeout, a full disk, a read-only database, a
corrupt page, a lost connection or an exhausted pool are conditions the operator can end;
none of them says anything about the request, so none may answer it ``internal_error``
(spec §3: an outage fails no request). Each backend's ``classify`` function tells those
(``Failure.HOLD``) from errors of the statement or its data (``Failure.BUG``), which
propagate unchanged to the worker's per-message boundary::

    driver error ─► classify ─► HOLD ─► StoreUnavailableError (the request waits)
                             └► BUG  ─► the driver's error itself (internal_error)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TypeAlias

from consumer.errors import StoreUnavailableError


class Failure(Enum):
    """What a store failure means for the request that met it."""

    HOLD = "hold"  # the store is unavailable: the request waits until it is back
    BUG = "bug"  # the statement or its data is wrong: waiting would never end it


Classify: TypeAlias = Callable[[Exception], Failure]
"""A backend's pure verdict on one of its driver's errors."""


def hold_every(_exc: Exception) -> Failure:
    """Classify every error as an outage (for calls whose errors can only be outages)."""
    return Failure.HOLD


@contextmanager
def store_failures(*kinds: type[Exception], classify: Classify = hold_every) -> Iterator[None]:
    """Raise each exception of ``kinds`` that ``classify`` holds as ``StoreUnavailableError``.

    Args:
        kinds: the database driver's error classes (``sqlite3.Error``, ``psycopg.Error``...).
        classify: the backend's verdict on one of them; a ``Failure.BUG`` propagates as is.

    Raises:
        StoreUnavailableError: the store is unavailable; the driver's message is kept.
    """
    try:
        yield
    except kinds as exc:
        if classify(exc) is Failure.BUG:
            raise
        raise StoreUnavailableError(f"idempotency store failed: {exc}") from exc
