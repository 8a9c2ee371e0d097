"""Deferred requests, the releaser's lease and DAG rates in PostgreSQL (issue 30).

``PostgresDeferrals`` is the ``DeferralStore`` half of ``PostgresStore``: a mixin over the
store's pool, kept apart so that each module stays one concept (and ``postgres.py`` under
400 lines). Each method is one statement in autocommit. Replicas on several hosts share the
database, so ``due_at``, ``created_at``, the lease and the fence are all timed by the
server's ``clock_timestamp()`` (as tracking's ``LEASE`` is), never by a replica's clock;
``sqlite_deferred`` keeps the same rules. Retention never touches these tables.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg_pool import ConnectionPool

from consumer.store.deferral_protocol import DEFAULT_DUE_LIMIT
from consumer.store.deferred import DeferredCount, DeferredRequest
from consumer.store.entry import Coordinates
from consumer.store.failures import store_failures
from consumer.store.postgres_failures import classify_postgres_error
from consumer.store.postgres_schema import DEFERRED, FLOW_LEASE, FLOW_RATE
from consumer.store.rows import (
    DEFERRED_COLUMNS,
    DEFERRED_VALUES,
    deferred_from_row,
    deferred_values,
)

_NAMES = tuple(name.strip() for name in DEFERRED_VALUES.split(","))
_AT = (
    "key = %(key)s AND source_topic = %(topic)s"
    " AND source_partition = %(partition)s AND source_offset = %(offset)s"
)
DEFER = (
    f"INSERT INTO {DEFERRED} ({DEFERRED_VALUES}, created_at)"  # noqa: S608 -- constants
    f" VALUES ({', '.join(f'%({name})s' for name in _NAMES)}, clock_timestamp())"
    " ON CONFLICT (key, source_topic, source_partition, source_offset) DO NOTHING RETURNING seq"
)
_DUE = "(due_at IS NULL OR due_at <= clock_timestamp())"
DUE = (
    f"SELECT {DEFERRED_COLUMNS} FROM {DEFERRED} WHERE {_DUE}"  # noqa: S608 -- constants
    " ORDER BY seq LIMIT %(limit)s"
)
# one DAG's: its backlog at its limit never hides another DAG's rows (index dag_id, seq)
DUE_OF_DAG = (
    f"SELECT {DEFERRED_COLUMNS} FROM {DEFERRED} WHERE dag_id = %(dag_id)s AND {_DUE}"  # noqa: S608 -- constants
    " ORDER BY seq LIMIT %(limit)s"
)
FORGET = f"DELETE FROM {DEFERRED} WHERE {_AT}"  # noqa: S608 -- constants
COUNTS = (
    f"SELECT dag_id, reason, count(*), min(created_at) FROM {DEFERRED}"  # noqa: S608 -- constants
    " GROUP BY dag_id, reason ORDER BY dag_id, reason"
)
RELEASE = f"UPDATE {DEFERRED} SET released = true, due_at = NULL WHERE dag_id = %(dag_id)s"  # noqa: S608
# One row, the releaser's. Racing inserts of the free lease serialise on its primary key: the
# loser's ON CONFLICT sees the winner's row, unexpired and another owner's, and updates nothing.
TAKE_LEASE = (
    f"INSERT INTO {FLOW_LEASE} AS l (name, lease_owner, lease_until)"  # noqa: S608 -- constants
    " VALUES ('releaser', %(owner)s, clock_timestamp() + %(ttl)s)"
    " ON CONFLICT (name) DO UPDATE SET lease_owner = EXCLUDED.lease_owner,"
    " lease_until = EXCLUDED.lease_until"
    " WHERE l.lease_owner = EXCLUDED.lease_owner OR l.lease_until <= clock_timestamp()"
    " RETURNING lease_owner"
)
DROP_LEASE = f"DELETE FROM {FLOW_LEASE} WHERE name = 'releaser' AND lease_owner = %(owner)s"  # noqa: S608
RATE_NEXT = f"SELECT dag_id, next_at FROM {FLOW_RATE} WHERE dag_id = ANY(%(dag_ids)s)"  # noqa: S608
# The fence: FOR SHARE holds the lease row until this statement commits, so a takeover waits
# for it, and one that committed first is re-checked against the row it wrote (and fails).
SET_RATE = (
    f"INSERT INTO {FLOW_RATE} AS r (dag_id, next_at)"  # noqa: S608 -- constants
    " SELECT %(dag_id)s::text, %(at)s::timestamptz WHERE EXISTS (SELECT 1 FROM"
    f" {FLOW_LEASE} WHERE name = 'releaser' AND lease_owner = %(owner)s"
    " AND lease_until > clock_timestamp() FOR SHARE)"
    " ON CONFLICT (dag_id) DO UPDATE SET next_at = EXCLUDED.next_at RETURNING dag_id"
)


def _utc_instant(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _require_aware(moment: datetime | None) -> None:
    """Refuse a naive instant, as SQLite's ``to_epoch`` does (libpq would read it as local)."""
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store compares instants, pass UTC")


def _failures() -> AbstractContextManager[None]:
    return store_failures(psycopg.Error, classify=classify_postgres_error)


class PostgresDeferrals:
    """The ``DeferralStore`` methods of ``PostgresStore``, over the pool it opens."""

    _pool: ConnectionPool[psycopg.Connection[Any]]

    def _fetch(
        self, sql: LiteralString, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        with _failures(), self._pool.connection() as conn:
            return list(conn.execute(sql, params).fetchall())

    def _changed(self, sql: LiteralString, params: dict[str, Any]) -> int:
        with _failures(), self._pool.connection() as conn:
            return int(conn.execute(sql, params).rowcount)

    def defer(self, request: DeferredRequest) -> bool:
        """Park ``request`` unless parked already; say if this call inserted it."""
        _require_aware(request.due_at)
        return bool(self._fetch(DEFER, dict(zip(_NAMES, deferred_values(request), strict=True))))

    def due_deferred(
        self, limit: int = DEFAULT_DUE_LIMIT, *, dag_id: str | None = None
    ) -> list[DeferredRequest]:
        """Return the requests due by the database clock, lowest ``seq`` first."""
        sql = DUE if dag_id is None else DUE_OF_DAG
        found = self._fetch(sql, {"limit": limit, "dag_id": dag_id})
        return [deferred_from_row(row, _utc_instant) for row in found]

    def forget_deferred(self, key: str, at: Coordinates) -> bool:
        """Delete the deferred request of ``key`` at ``at``; say if it was there."""
        topic, partition, offset = at
        at_params = {"topic": topic, "partition": partition, "offset": offset}
        return self._changed(FORGET, {"key": key, **at_params}) > 0

    def deferred_counts(self) -> list[DeferredCount]:
        """Return how many requests wait per (dag_id, reason), and the oldest's ``created_at``."""
        return [
            DeferredCount(dag_id, reason, int(count), _utc_instant(oldest))
            for dag_id, reason, count, oldest in self._fetch(COUNTS)
        ]

    def release_deferred(self, dag_id: str) -> int:
        """Let ``dag_id``'s waiting requests through, limits and ``due_at`` aside; how many."""
        return self._changed(RELEASE, {"dag_id": dag_id})

    def take_flow_lease(self, owner: str, ttl: timedelta) -> bool:
        """Take or extend the releaser's lease; False while another owner holds it."""
        return bool(self._fetch(TAKE_LEASE, {"owner": owner, "ttl": ttl}))

    def drop_flow_lease(self, owner: str) -> None:
        """Give the releaser's lease up if ``owner`` holds it."""
        self._changed(DROP_LEASE, {"owner": owner})

    def rate_next(self, dag_ids: Collection[str]) -> dict[str, datetime]:
        """Return each DAG's earliest next run start; DAGs without one are absent."""
        if not dag_ids:
            return {}
        found = self._fetch(RATE_NEXT, {"dag_ids": list(set(dag_ids))})
        return {str(dag_id): _utc_instant(at) for dag_id, at in found}

    def set_rate_next(self, dag_id: str, at: datetime, owner: str) -> bool:
        """Record ``dag_id``'s next run start, only while ``owner`` holds the unexpired lease."""
        _require_aware(at)
        return bool(self._fetch(SET_RATE, {"dag_id": dag_id, "at": at, "owner": owner}))

    def store_now(self) -> datetime:
        """Return the database server's clock."""
        (row,) = self._fetch("SELECT clock_timestamp()")
        return _utc_instant(row[0])
