"""SqliteStore: the idempotency store in an embedded SQLite file (WAL, thread-safe).

Once open, a SQLite outage (locked, read-only, full, I/O) is raised as
``StoreUnavailableError``; an error of the statement or its data propagates (``failures``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from consumer.errors import ConfigError, StoreUnavailableError
from consumer.store import sqlite_leases, sqlite_refusals, sqlite_reruns
from consumer.store.entry import (
    Coordinates,
    EntryStatus,
    RememberedRefusal,
    RequestOrigin,
    RerunMark,
    StoredEntry,
)
from consumer.store.failures import store_failures
from consumer.store.protocol import DEFAULT_PURGE_BATCH, Clock
from consumer.store.recording import kept_for_run, may_overwrite, records_run
from consumer.store.sqlite_deferred import SqliteDeferrals
from consumer.store.sqlite_failures import classify_sqlite_error
from consumer.store.sqlite_leases import READ_BATCH
from consumer.store.sqlite_reruns import Window
from consumer.store.sqlite_schema import (
    COLUMNS,
    MARK_PENDING,
    RECORD_REPLACE,
    RECORD_SAME_RUN,
    apply_schema,
    entry_from_row,
    origin_values,
    schema_is_current,
    to_epoch,
)

MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 10_000


def _failures() -> AbstractContextManager[None]:
    """SQLite errors as the store reports them: outages held, bugs unchanged."""
    return store_failures(sqlite3.Error, classify=classify_sqlite_error)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SqliteStore(SqliteDeferrals):
    """The ``IdempotencyStore`` in one SQLite database file (deferrals: ``SqliteDeferrals``).

    One connection is shared by all threads behind a lock: SQLite serialises writers
    anyway, and a single connection is what makes ``:memory:`` work. WAL mode lets other
    processes (``replay``, ``doctor``) read while the worker writes, and ``busy_timeout``
    makes a second writer wait instead of failing. Every read-modify-write runs in a
    ``BEGIN IMMEDIATE`` transaction, so it is atomic across processes too.
    ``synchronous=NORMAL`` in WAL mode can lose the last transactions on power loss but
    never corrupts; the lost pending marks are then covered by Airflow's 409 (layer 2).
    """

    def __init__(
        self,
        path: str | Path,
        retention: timedelta,
        *,
        clock: Clock | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        """Open (creating if needed) the database at ``path`` and its schema.

        Args:
            path: a file path, or ``":memory:"``.
            retention: how long keys are remembered; must be positive.
            clock: the time source; the system clock in UTC by default.
            busy_timeout_ms: how long a write waits for another process's lock.

        Raises:
            ConfigError: the retention is not positive, the file cannot be opened, or it
                holds a schema newer than this release knows.
        """
        if retention <= timedelta(0):
            raise ConfigError(f"dedup retention must be positive, got {retention}")
        self._retention = retention
        self._clock = clock or _utc_now
        self._lock = threading.Lock()
        self._path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        try:
            self._conn = sqlite3.connect(
                self._path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,  # autocommit; transactions are explicit below
                check_same_thread=False,  # guarded by self._lock
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open idempotency store {self._path!r}: {exc}") from exc
        try:
            self._prepare()
        except (sqlite3.Error, StoreUnavailableError) as exc:
            self._conn.close()
            raise ConfigError(f"cannot open idempotency store {self._path!r}: {exc}") from exc
        except ConfigError:
            self._conn.close()
            raise

    @property
    def path(self) -> str:
        """The database file path, or ``":memory:"``."""
        return self._path

    @property
    def retention(self) -> timedelta:
        """How long keys are remembered."""
        return self._retention

    def _prepare(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        if self._path != MEMORY:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if schema_is_current(conn.cursor(), self._path):
            return
        with self._transaction() as cur:
            apply_schema(cur, self._path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock, _failures():
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                self._roll_back(cur)
                raise
            try:
                cur.execute("COMMIT")
            except sqlite3.Error:  # SQLITE_BUSY or a full disk leaves the transaction open
                self._roll_back(cur)
                raise

    def _roll_back(self, cur: sqlite3.Cursor) -> None:
        if self._conn.in_transaction:  # SQLite itself may have rolled back (disk full)
            cur.execute("ROLLBACK")

    def _cutoff(self) -> float:
        return to_epoch(self._clock() - self._retention)

    def _window(self) -> Window:
        now = self._clock()
        cutoff = to_epoch(now - self._retention)
        return Window(to_epoch(now), cutoff, self._retention.total_seconds())

    def _select_live(self, cur: sqlite3.Cursor, key: str) -> StoredEntry | None:
        row = cur.execute(
            f"SELECT {COLUMNS} FROM idempotency WHERE key = ? AND created_at >= ?",  # noqa: S608 -- constant column list
            (key, self._cutoff()),
        ).fetchone()
        return None if row is None else entry_from_row(row)

    def get(self, key: str) -> StoredEntry | None:
        """Return the live entry for ``key``, or None if unknown or expired."""
        with self._lock, _failures():
            return self._select_live(self._conn.cursor(), key)

    def get_many(self, keys: Collection[str]) -> dict[str, StoredEntry]:
        """Return the live entries of ``keys``: one SELECT per ``READ_BATCH`` keys."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, StoredEntry] = {}
        with self._lock, _failures():
            cur = self._conn.cursor()
            cutoff = self._cutoff()
            for start in range(0, len(unique), READ_BATCH):
                chunk = unique[start : start + READ_BATCH]
                marks = ",".join("?" * len(chunk))
                rows = cur.execute(
                    f"SELECT {COLUMNS} FROM idempotency "  # noqa: S608 -- constant columns, ? marks
                    f"WHERE key IN ({marks}) AND created_at >= ?",
                    (*chunk, cutoff),
                ).fetchall()
                found.update((row[0], entry_from_row(row)) for row in rows)
        return found

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
        now = to_epoch(self._clock())
        with self._transaction() as cur:
            existing = self._select_live(cur, key)
            if existing is not None:
                return existing
            sqlite_reruns.forget_ended_life(cur, key, self._window())
            claimed = (key, fingerprint, dag_id, dag_run_id, EntryStatus.PENDING.value, now, now)
            cur.execute(MARK_PENDING, (*claimed, *origin_values(origin)))
            created = self._select_live(cur, key)
        if created is None:  # pragma: no cover -- only with a clock that runs backwards
            raise AssertionError(f"pending mark for {key!r} vanished inside its transaction")
        return replace(created, claimed_here=True)

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
        now = to_epoch(self._clock())
        with self._transaction() as cur:
            existing = self._select_live(cur, key)
            if existing is not None and not may_overwrite(existing, status, origin):
                return existing
            if existing is None:
                sqlite_reruns.forget_ended_life(cur, key, self._window())
            created = now if existing is None else to_epoch(existing.created_at)
            same_run = existing is not None and records_run(existing, dag_run_id)
            if existing is not None and same_run:
                status, run_state = kept_for_run(existing, status, run_state)
            run = (dag_id, dag_run_id, status.value, run_state, logical_date, run_url, int(track))
            values = (fingerprint, *run, now, *origin_values(origin), created, key)
            cur.execute(RECORD_SAME_RUN if same_run else RECORD_REPLACE, values)
            stored = self._select_live(cur, key)
        if stored is None:  # pragma: no cover -- only with a clock that runs backwards
            raise AssertionError(f"outcome for {key!r} vanished inside its transaction")
        return stored

    def release(self, key: str, *, refusal: RememberedRefusal | None = None) -> bool:
        """Forget ``key`` and its re-run marks, remembering ``refusal``; say if it was held."""
        now = to_epoch(self._clock())
        with self._transaction() as cur:
            return sqlite_refusals.release(cur, key, refusal, now=now)

    def refusal_at(self, key: str, at: Coordinates) -> RememberedRefusal | None:
        """Return the live refusal remembered for ``key`` at ``at``, or None."""
        with self._lock, _failures():
            return sqlite_refusals.select(self._conn.cursor(), key, at, cutoff=self._cutoff())

    def get_rerun(self, key: str, rerun_id: str) -> RerunMark | None:
        """Return the live re-run mark of ``key`` named ``rerun_id``, or None."""
        with self._lock, _failures():
            return sqlite_reruns.select(self._conn.cursor(), key, rerun_id, self._window())

    def mark_rerun(
        self, key: str, rerun_id: str, *, evidence: str | None, at: Coordinates
    ) -> RerunMark:
        """Claim the re-run ``rerun_id`` of ``key``; a live mark is returned unchanged."""
        with self._transaction() as cur:
            return sqlite_reruns.mark(cur, self._window(), key, rerun_id, evidence=evidence, at=at)

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
        with self._transaction() as cur:
            window = self._window()
            sqlite_reruns.record(
                cur, window, key, rerun_id, run_state=run_state, at=at, track=track, origin=origin
            )

    def tracked_runs(self, limit: int = 1000) -> list[StoredEntry]:
        """Return live tracked entries whose run is not yet seen complete, oldest first."""
        with self._lock, _failures():
            return sqlite_leases.tracked(self._conn.cursor(), cutoff=self._cutoff(), limit=limit)

    def mark_completed(self, key: str, run_state: str, *, owner: str | None = None) -> bool:
        """Note that the tracked run of ``key`` reached ``run_state``; end its lease.

        With ``owner``, only while ``owner`` holds the key's lease.
        """
        now = to_epoch(self._clock())
        with self._transaction() as cur:
            return sqlite_leases.complete(
                cur, key, run_state, owner=owner, now=now, cutoff=self._cutoff()
            )

    def abandon_tracking(self, key: str, *, owner: str | None = None) -> bool:
        """Stop tracking the run of ``key`` without it being seen complete; end its lease.

        With ``owner``, only while ``owner`` holds the key's lease.
        """
        now = to_epoch(self._clock())
        with self._transaction() as cur:
            return sqlite_leases.abandon(cur, key, owner=owner, now=now, cutoff=self._cutoff())

    def purge(self, older_than: datetime) -> int:
        """Delete entries (with their re-runs) and refusals created before ``older_than``."""
        window = replace(self._window(), cutoff=to_epoch(older_than))
        with self._transaction() as cur:
            return sqlite_reruns.purge(cur, window) + sqlite_refusals.purge(cur, window.cutoff)

    def purge_expired(self, batch: int = DEFAULT_PURGE_BATCH) -> int:
        """Delete at most ``batch`` rows past the retention: entries first, then refusals."""
        window = self._window()
        with self._transaction() as cur:
            entries = sqlite_reruns.purge(cur, window, batch)
            return entries + sqlite_refusals.purge(cur, window.cutoff, batch - entries)

    def lease_tracked(self, owner: str, ttl: timedelta, limit: int = 1000) -> list[StoredEntry]:
        """Lease up to ``limit`` tracked runs to ``owner`` (``IdempotencyStore.lease_tracked``)."""
        now = self._clock()
        with self._transaction() as cur:
            return sqlite_leases.lease(
                cur,
                owner,
                now=to_epoch(now),
                until=to_epoch(now + ttl),
                cutoff=self._cutoff(),
                limit=limit,
            )

    def renew_leases(self, owner: str, ttl: timedelta, keys: Collection[str]) -> set[str]:
        """Extend ``owner``'s leases on ``keys``; return those it holds (the publish fence).

        One host's file: the local clock times the leases, as in ``lease_tracked``.
        """
        until = to_epoch(self._clock() + ttl)
        with self._transaction() as cur:
            unique = list(dict.fromkeys(keys))
            return sqlite_leases.renew(cur, owner, unique, until=until, cutoff=self._cutoff())

    def release_leases(self, owner: str) -> int:
        """Give up every lease ``owner`` holds; return how many."""
        with self._transaction() as cur:
            return sqlite_leases.release_all(cur, owner)

    def schema_version(self) -> int:
        """Return the schema version recorded in the database."""
        with self._lock, _failures():
            row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connection; calling it again does nothing."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteStore:
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
