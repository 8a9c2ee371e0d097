"""Deferred requests, the releaser's lease and DAG rates in the SQLite file (issue 30).

``SqliteDeferrals`` is the ``DeferralStore`` half of ``SqliteStore``: a mixin over the
store's connection, lock, clock and ``BEGIN IMMEDIATE`` transactions, kept apart so that
each module stays one concept (and ``sqlite.py`` under 400 lines). One host shares the
file, so its injected clock times ``due_at``, the lease and the fence; ``postgres_deferred``
keeps the same rules on the database server's clock. Retention never touches these tables.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta

from consumer.store.deferral_protocol import DEFAULT_DUE_LIMIT
from consumer.store.deferred import DeferredCount, DeferredRequest
from consumer.store.entry import Coordinates
from consumer.store.failures import store_failures
from consumer.store.protocol import Clock
from consumer.store.rows import (
    DEFERRED_COLUMNS,
    DEFERRED_VALUES,
    deferred_from_row,
    deferred_values,
)
from consumer.store.sqlite_failures import classify_sqlite_error
from consumer.store.sqlite_leases import READ_BATCH
from consumer.store.sqlite_schema import from_epoch, to_epoch

_DEFER = (
    f"INSERT INTO deferred ({DEFERRED_VALUES}, created_at)"  # noqa: S608 -- constant columns
    f" VALUES ({', '.join('?' * (len(DEFERRED_VALUES.split(',')) + 1))})"
    " ON CONFLICT (key, source_topic, source_partition, source_offset) DO NOTHING"
)
_DUE = "(due_at IS NULL OR due_at <= ?)"
_DUE_ROWS = f"SELECT {DEFERRED_COLUMNS} FROM deferred WHERE {_DUE} ORDER BY seq LIMIT ?"  # noqa: S608 -- constants
# one DAG's: its backlog at its limit never hides another DAG's rows (index dag_id, seq)
_DUE_ROWS_OF_DAG = (
    f"SELECT {DEFERRED_COLUMNS} FROM deferred WHERE dag_id = ? AND {_DUE}"  # noqa: S608 -- constants
    " ORDER BY seq LIMIT ?"
)
_FORGET = (
    "DELETE FROM deferred"
    " WHERE key = ? AND source_topic = ? AND source_partition = ? AND source_offset = ?"
)
_COUNTS = (
    "SELECT dag_id, reason, count(*), min(created_at) FROM deferred"
    " GROUP BY dag_id, reason ORDER BY dag_id, reason"
)
_RELEASE = "UPDATE deferred SET released = 1, due_at = NULL WHERE dag_id = ?"
# one row, the releaser's: taken when free, expired (lease_until <= now) or the owner's own
_TAKE_LEASE = (
    "INSERT INTO flow_lease (name, lease_owner, lease_until) VALUES ('releaser', ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET lease_owner = excluded.lease_owner,"
    " lease_until = excluded.lease_until"
    " WHERE flow_lease.lease_owner = excluded.lease_owner OR flow_lease.lease_until <= ?"
    " RETURNING lease_owner"
)
_DROP_LEASE = "DELETE FROM flow_lease WHERE name = 'releaser' AND lease_owner = ?"
# the fence: written only while the owner's lease is unexpired, in the same statement
_SET_RATE = (
    "INSERT INTO flow_rate (dag_id, next_at) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM flow_lease"
    " WHERE name = 'releaser' AND lease_owner = ? AND lease_until > ?)"
    " ON CONFLICT (dag_id) DO UPDATE SET next_at = excluded.next_at RETURNING dag_id"
)


def _stored(request: DeferredRequest) -> tuple[object, ...]:
    values = deferred_values(request)
    due_at = request.due_at
    return (*values[:-2], None if due_at is None else to_epoch(due_at), values[-1])


class SqliteDeferrals:
    """The ``DeferralStore`` methods of ``SqliteStore``, over the attributes it sets up."""

    _conn: sqlite3.Connection
    _lock: threading.Lock
    _clock: Clock

    def _transaction(self) -> AbstractContextManager[sqlite3.Cursor]:
        raise NotImplementedError  # SqliteStore's BEGIN IMMEDIATE transaction

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Cursor]:
        """A cursor for one read, outside any write lock (a locked file still answers)."""
        with self._lock, store_failures(sqlite3.Error, classify=classify_sqlite_error):
            yield self._conn.cursor()

    def defer(self, request: DeferredRequest) -> bool:
        """Park ``request`` unless parked already; say if this call inserted it."""
        values = (*_stored(request), to_epoch(self._clock()))
        with self._transaction() as cur:
            return cur.execute(_DEFER, values).rowcount > 0

    def due_deferred(
        self, limit: int = DEFAULT_DUE_LIMIT, *, dag_id: str | None = None
    ) -> list[DeferredRequest]:
        """Return the requests due by the store's clock, lowest ``seq`` first."""
        now = to_epoch(self._clock())
        with self._reading() as cur:
            if dag_id is None:
                found = cur.execute(_DUE_ROWS, (now, limit)).fetchall()
            else:
                found = cur.execute(_DUE_ROWS_OF_DAG, (dag_id, now, limit)).fetchall()
        return [deferred_from_row(row, from_epoch) for row in found]

    def forget_deferred(self, key: str, at: Coordinates) -> bool:
        """Delete the deferred request of ``key`` at ``at``; say if it was there."""
        with self._transaction() as cur:
            return cur.execute(_FORGET, (key, *at)).rowcount > 0

    def deferred_counts(self) -> list[DeferredCount]:
        """Return how many requests wait per (dag_id, reason), and the oldest's ``created_at``."""
        with self._reading() as cur:
            found = cur.execute(_COUNTS).fetchall()
        return [DeferredCount(dag, reason, int(n), from_epoch(t)) for dag, reason, n, t in found]

    def release_deferred(self, dag_id: str) -> int:
        """Let ``dag_id``'s waiting requests through, limits and ``due_at`` aside; how many."""
        with self._transaction() as cur:
            return cur.execute(_RELEASE, (dag_id,)).rowcount

    def take_flow_lease(self, owner: str, ttl: timedelta) -> bool:
        """Take or extend the releaser's lease; False while another owner holds it."""
        now = self._clock()
        with self._transaction() as cur:
            taken = (owner, to_epoch(now + ttl), to_epoch(now))
            return cur.execute(_TAKE_LEASE, taken).fetchone() is not None

    def drop_flow_lease(self, owner: str) -> None:
        """Give the releaser's lease up if ``owner`` holds it."""
        with self._transaction() as cur:
            cur.execute(_DROP_LEASE, (owner,))

    def rate_next(self, dag_ids: Collection[str]) -> dict[str, datetime]:
        """Return each DAG's earliest next run start; DAGs without one are absent."""
        unique = list(dict.fromkeys(dag_ids))
        found: dict[str, datetime] = {}
        with self._reading() as cur:
            for start in range(0, len(unique), READ_BATCH):
                chunk = unique[start : start + READ_BATCH]
                rows = cur.execute(
                    "SELECT dag_id, next_at FROM flow_rate"  # noqa: S608 -- ? marks
                    f" WHERE dag_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update((str(dag), from_epoch(at)) for dag, at in rows)
        return found

    def set_rate_next(self, dag_id: str, at: datetime, owner: str) -> bool:
        """Record ``dag_id``'s next run start, only while ``owner`` holds the unexpired lease."""
        next_at = to_epoch(at)
        with self._transaction() as cur:
            fenced = (dag_id, next_at, owner, to_epoch(self._clock()))
            return cur.execute(_SET_RATE, fenced).fetchone() is not None

    def store_now(self) -> datetime:
        """Return the store's (injected) clock."""
        return self._clock()
