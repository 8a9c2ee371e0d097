"""PostgresStore: the idempotency store in PostgreSQL, shared by every replica of a fleet."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, LiteralString

import psycopg
from psycopg_pool import ConnectionPool

from consumer.errors import ConfigError
from consumer.store import postgres_refusals, postgres_reruns
from consumer.store.entry import (
    Coordinates,
    EntryStatus,
    RememberedRefusal,
    RequestOrigin,
    RerunMark,
    StoredEntry,
)
from consumer.store.failures import store_failures
from consumer.store.postgres_deferred import PostgresDeferrals
from consumer.store.postgres_failures import classify_postgres_error
from consumer.store.postgres_schema import (
    COLUMNS,
    TABLE,
    VERSION_TABLE,
    entry_from_row,
    open_schema,
    origin_params,
    refusal_from_row,
    rerun_from_row,
)
from consumer.store.postgres_sql import (
    ABANDON,
    ALL_COLUMNS,
    COMPLETE,
    LEASE,
    LIVE,
    MARK_PENDING,
    RECORD,
    RELEASE_LEASES,
    RENEW,
    TRACKED_RUNS,
)
from consumer.store.protocol import DEFAULT_PURGE_BATCH, Clock
from consumer.store.redaction import display_url, mask_url_secrets

DEFAULT_POOL_SIZE = 16  # connections per replica; the dispatcher's threads share them
CONNECT_TIMEOUT = 10.0  # seconds to reach the database at start-up before giving up
POOL_TIMEOUT = 30.0  # seconds a call waits for a free connection before raising
CLAIM_ATTEMPTS = 3  # a re-run claim whose live holder vanished (released) before it was read

# every driver error, the pool's too (PoolTimeout is an OperationalError); the SQLSTATE
# decides whether it holds (postgres_failures)
DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.Error,)


def _failures() -> AbstractContextManager[None]:
    """Driver errors as the store reports them: outages held, bugs unchanged."""
    return store_failures(*DRIVER_ERRORS, classify=classify_postgres_error)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PostgresStore(PostgresDeferrals):
    """The ``IdempotencyStore`` in a PostgreSQL database, through a psycopg 3 pool.

    Every method is one statement in autocommit (atomic on its own; ``mark_rerun`` of a
    held mark reads the holder in a second), so the hot path costs one round trip per poll
    for the reads (``get_many``) and two per new key for the writes (``mark_pending``,
    ``record``). An entry's instants (creation, retention) come from the injected clock, so
    replicas' clocks should be NTP-synchronised (as Kafka's own timestamps already assume);
    tracking leases and deferrals (``PostgresDeferrals``) are timed by the server's clock
    alone, so a skewed replica never takes a live lease.
    """

    def __init__(
        self,
        url: str,
        retention: timedelta,
        *,
        clock: Clock | None = None,
        password: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        """Connect, then create or upgrade the schema.

        Args:
            url: a libpq URI (``postgresql://user@host:5432/db?sslmode=verify-full``);
                TLS and every other connection option are libpq's own parameters.
            retention: how long keys are remembered; must be positive.
            clock: the time source; the system clock in UTC by default.
            password: the password, when it is not in the URL (or ``PGPASSFILE``).
            pool_size: the most connections this store opens.
            connect_timeout: seconds to wait for the first connection.

        Raises:
            ConfigError: the retention is not positive, the database cannot be reached
                or refuses the login, or it holds a newer schema.
        """
        if retention <= timedelta(0):
            raise ConfigError(f"dedup retention must be positive, got {retention}")
        self._retention = retention
        self._clock = clock or _utc_now
        self._where = display_url(url)
        kwargs: dict[str, Any] = {"autocommit": True}
        if password is not None:
            kwargs["password"] = password
        try:
            # one direct connection first: its error is libpq's own, at once (the pool
            # would retry until its timeout), and it checks (maybe upgrades) the schema
            with psycopg.connect(url, connect_timeout=int(connect_timeout), **kwargs) as conn:
                open_schema(conn, self._where)
        except psycopg.Error as exc:
            said = mask_url_secrets(str(exc), url)  # libpq may quote a value of the URL
            raise ConfigError(
                f"cannot open idempotency store {self._where} (TRIGGER_CONSUMER_STORE_URL): {said}"
            ) from exc
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            timeout=POOL_TIMEOUT,
            open=True,
            name="idempotency-store",
        )

    @property
    def retention(self) -> timedelta:
        """How long keys are remembered."""
        return self._retention

    @property
    def where(self) -> str:
        """The database URL without password."""
        return self._where

    def _rows(self, sql: LiteralString, params: Mapping[str, Any]) -> list[StoredEntry]:
        with _failures(), self._pool.connection() as conn:
            return [entry_from_row(row) for row in conn.execute(sql, params).fetchall()]

    def _marks(self, sql: LiteralString, params: Mapping[str, Any]) -> list[RerunMark]:
        with _failures(), self._pool.connection() as conn:
            return [rerun_from_row(row) for row in conn.execute(sql, params).fetchall()]

    def _count(self, sql: LiteralString, params: Mapping[str, Any]) -> int:
        with _failures(), self._pool.connection() as conn:
            return conn.execute(sql, params).rowcount

    def _purged(self, sql: LiteralString, params: Mapping[str, Any]) -> int:
        with _failures(), self._pool.connection() as conn:
            row = conn.execute(sql, params).fetchone()
        return 0 if row is None else int(row[0])

    def _cutoff(self) -> datetime:
        return self._clock() - self._retention

    def get(self, key: str) -> StoredEntry | None:
        """Return the live entry for ``key``, or None if unknown or expired."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Collection[str]) -> dict[str, StoredEntry]:
        """Return the live entries of ``keys`` in one statement (``= ANY``, no chunks)."""
        if not keys:
            return {}
        sql = f"SELECT {COLUMNS} FROM {TABLE} t WHERE key = ANY(%(keys)s) AND {LIVE}"  # noqa: S608
        rows = self._rows(sql, {"keys": list(set(keys)), "cutoff": self._cutoff()})
        return {entry.key: entry for entry in rows}

    def mark_pending(
        self,
        key: str,
        *,
        fingerprint: str,
        dag_id: str,
        dag_run_id: str,
        origin: RequestOrigin | None = None,
    ) -> StoredEntry:
        """Claim ``key`` before the Airflow POST; an existing live entry is returned unchanged."""
        values = self._values(
            key,
            fingerprint=fingerprint,
            dag_id=dag_id,
            dag_run_id=dag_run_id,
            status=EntryStatus.PENDING,
            origin=origin,
        )
        holder = self._rows(MARK_PENDING, values)[0]
        # a live holder keeps its created_at: this call's own clock reading means it wrote it
        return replace(holder, claimed_here=holder.created_at == values["created_at"])

    def record(
        self,
        key: str,
        *,
        fingerprint: str,
        dag_id: str,
        dag_run_id: str,
        status: EntryStatus,
        run_state: str | None = None,
        logical_date: str | None = None,
        run_url: str | None = None,
        track: bool = False,
        origin: RequestOrigin | None = None,
    ) -> StoredEntry:
        """Record ``key``'s final outcome (``IdempotencyStore.record``); ValueError for pending."""
        if status is EntryStatus.PENDING:
            raise ValueError("record() takes a final status; use mark_pending() for pending")
        values = self._values(
            key,
            fingerprint=fingerprint,
            dag_id=dag_id,
            dag_run_id=dag_run_id,
            status=status,
            origin=origin,
        )
        values.update(run_state=run_state, logical_date=logical_date, run_url=run_url)
        values["track"] = track
        return self._rows(RECORD, values)[0]

    def _values(
        self,
        key: str,
        *,
        fingerprint: str,
        dag_id: str,
        dag_run_id: str,
        status: EntryStatus,
        origin: RequestOrigin | None,
    ) -> dict[str, Any]:
        now = self._clock()
        values: dict[str, Any] = dict.fromkeys(ALL_COLUMNS)
        values.update(
            key=key,
            fingerprint=fingerprint,
            dag_id=dag_id,
            dag_run_id=dag_run_id,
            status=status.value,
            track=False,
            created_at=now,
            updated_at=now,
            cutoff=now - self._retention,
            retention=self._retention,
        )
        values.update(origin_params(origin))
        return values

    def release(self, key: str, *, refusal: RememberedRefusal | None = None) -> bool:
        """Forget ``key`` and its re-run marks, remembering ``refusal``; say if it was held."""
        return self._count(*postgres_refusals.release(key, refusal, now=self._clock())) > 0

    def refusal_at(self, key: str, at: Coordinates) -> RememberedRefusal | None:
        """Return the live refusal remembered for ``key`` at ``at``, or None."""
        values = postgres_refusals.params(key, at, cutoff=self._cutoff())
        with _failures(), self._pool.connection() as conn:
            row = conn.execute(postgres_refusals.SELECT, values).fetchone()
        return None if row is None else refusal_from_row(row)

    def get_rerun(self, key: str, rerun_id: str) -> RerunMark | None:
        """Return the live re-run mark of ``key`` named ``rerun_id``, or None."""
        values = postgres_reruns.params(key, rerun_id, now=self._clock(), retention=self._retention)
        found = self._marks(postgres_reruns.SELECT, values)
        return found[0] if found else None

    def mark_rerun(
        self, key: str, rerun_id: str, *, evidence: str | None, at: Coordinates
    ) -> RerunMark:
        """Claim the re-run ``rerun_id`` of ``key``; a live mark is returned unchanged.

        Only the claim that wrote the mark gets a row back (``claimed_here``); otherwise the
        holder is read, and claimed anew if it was deleted in between.
        """
        values = postgres_reruns.params(
            key, rerun_id, now=self._clock(), retention=self._retention, at=at, evidence=evidence
        )
        for _ in range(CLAIM_ATTEMPTS):
            if claimed := self._marks(postgres_reruns.MARK, values):
                return replace(claimed[0], claimed_here=True)
            if held := self._marks(postgres_reruns.SELECT, values):
                return held[0]
        raise AssertionError(f"re-run {rerun_id!r} of {key!r} vanished under every claim")

    def record_rerun(
        self,
        key: str,
        rerun_id: str,
        *,
        run_state: str | None,
        at: Coordinates,
        track: bool = False,
        origin: RequestOrigin | None = None,
    ) -> None:
        """Note the re-run done; with ``track``, its run is tracked again for ``origin``."""
        values = postgres_reruns.params(
            key,
            rerun_id,
            now=self._clock(),
            retention=self._retention,
            at=at,
            run_state=run_state,
            track=track,
            origin=origin,
        )
        self._count(postgres_reruns.RECORD, values)

    def tracked_runs(self, limit: int = 1000) -> list[StoredEntry]:
        """Return live tracked entries whose run is not yet seen complete, oldest first."""
        return self._rows(TRACKED_RUNS, {"cutoff": self._cutoff(), "limit": limit})

    def lease_tracked(self, owner: str, ttl: timedelta, limit: int = 1000) -> list[StoredEntry]:
        """Lease up to ``limit`` tracked runs to ``owner`` (``IdempotencyStore.lease_tracked``)."""
        params = {"owner": owner, "ttl": ttl, "cutoff": self._cutoff(), "limit": limit}
        return sorted(self._rows(LEASE, params), key=lambda e: (e.created_at, e.key))

    def renew_leases(self, owner: str, ttl: timedelta, keys: Collection[str]) -> set[str]:
        """Extend ``owner``'s leases on ``keys``; return those it holds (the publish fence)."""
        if not keys:
            return set()
        params = {"owner": owner, "ttl": ttl, "keys": list(set(keys)), "cutoff": self._cutoff()}
        return {entry.key for entry in self._rows(RENEW, params)}

    def release_leases(self, owner: str) -> int:
        """Give up every lease ``owner`` holds; return how many."""
        return self._count(RELEASE_LEASES, {"owner": owner})

    def mark_completed(self, key: str, run_state: str, *, owner: str | None = None) -> bool:
        """Note that the tracked run of ``key`` reached ``run_state``; end its lease.

        With ``owner``, only while ``owner`` holds the key's lease.
        """
        now = self._clock()
        params = {
            "state": run_state,
            "now": now,
            "key": key,
            "owner": owner,
            "cutoff": now - self._retention,
        }
        return self._count(COMPLETE, params) > 0

    def abandon_tracking(self, key: str, *, owner: str | None = None) -> bool:
        """Stop tracking the run of ``key`` without it being seen complete; end its lease.

        With ``owner``, only while ``owner`` holds the key's lease.
        """
        now = self._clock()
        params = {"now": now, "key": key, "owner": owner, "cutoff": now - self._retention}
        return self._count(ABANDON, params) > 0

    def purge(self, older_than: datetime) -> int:
        """Delete entries (with their re-runs) and refusals created before ``older_than``."""
        if older_than.tzinfo is None:
            raise ValueError(f"naive datetime {older_than!r}: the store compares instants")
        params = {"cutoff": older_than, "retention": self._retention}
        return self._purged(postgres_refusals.PURGE, params)

    def purge_expired(self, batch: int = DEFAULT_PURGE_BATCH) -> int:
        """Delete at most ``batch`` rows past the retention: entries first, then refusals."""
        params = {"cutoff": self._cutoff(), "retention": self._retention, "batch": batch}
        return self._purged(postgres_refusals.PURGE_EXPIRED, params)

    def schema_version(self) -> int:
        """Return the schema version recorded in the database."""
        with _failures(), self._pool.connection() as conn:
            row = conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the pool; calling it again does nothing."""
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        """Return the store itself, for ``with``."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()
