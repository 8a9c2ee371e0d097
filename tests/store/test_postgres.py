"""Tests of consumer/store/postgres.py and postgres_schema.py on the devstack PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from consumer.errors import ConfigError, StoreUnavailableError
from consumer.store import (
    EntryStatus,
    RememberedRefusal,
    RequestOrigin,
    RerunStatus,
    open_store,
    postgres_schema,
)
from consumer.store.deferred import DeferralReason, DeferredRequest
from consumer.store.postgres import PostgresStore, display_url
from consumer.store.postgres_schema import SCHEMA_VERSION, TABLE, VERSION_TABLE
from tests.store.faults import read_only
from tests.store.origins import assert_upgrade_kept_old_origin_and_stores_route_and_trace

RETENTION = timedelta(days=7)
REPLICAS = 6
# the table schema version 1 made (before routes kept route and trace context)
VERSION_1 = f"""CREATE TABLE {TABLE} (
    key text PRIMARY KEY, fingerprint text NOT NULL, dag_id text NOT NULL,
    dag_run_id text NOT NULL, status text NOT NULL, run_state text, logical_date text,
    run_url text, track boolean NOT NULL DEFAULT false, completed_at timestamptz,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, correlation_id text,
    reply_topic text, source_topic text, source_partition integer, source_offset bigint,
    source_timestamp_ms bigint, abandoned_at timestamptz, lease_owner text,
    lease_until timestamptz, leased_at timestamptz
)"""

START_REPLICA = (
    "import sys\n"
    "from datetime import timedelta\n"
    "from consumer.store import open_store\n"
    "store = open_store(sys.argv[1], timedelta(days=7))\n"
    "store.mark_pending('k-' + sys.argv[2], fingerprint='fp', dag_id='etl', dag_run_id='r')\n"
    "print(store.schema_version())\n"
    "store.close()\n"
)


def test_replicas_starting_at_once_upgrade_the_schema_once(new_database: str) -> None:
    """Six processes opening an empty database together all start; the schema is made once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START_REPLICA, new_database, str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(REPLICAS)
    ]
    results = [proc.communicate(timeout=120) for proc in procs]

    assert [proc.returncode for proc in procs] == [0] * REPLICAS, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(SCHEMA_VERSION)}
    with psycopg.connect(new_database) as conn:
        assert conn.execute(f"SELECT count(*) FROM {VERSION_TABLE}").fetchone() == (1,)  # noqa: S608
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (REPLICAS,)  # noqa: S608


def test_version_1_database_gains_route_and_trace_columns_its_entries_without_them(
    new_database: str,
) -> None:
    """A version 1 database is upgraded: its tracked entry keeps its origin, no route or trace."""
    with psycopg.connect(new_database, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {VERSION_TABLE} (version integer NOT NULL)")
        conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (1)")  # noqa: S608
        conn.execute(VERSION_1)
        conn.execute(
            f"INSERT INTO {TABLE} (key, fingerprint, dag_id, dag_run_id, status, track,"  # noqa: S608
            " created_at, updated_at, correlation_id, source_topic, source_partition,"
            " source_offset) VALUES ('k1', 'fp-1', 'etl', 'run-k1', 'triggered', true,"
            " now(), now(), 'corr-1', 'requests', 2, 41)"
        )

    with PostgresStore(new_database, RETENTION) as upgraded:
        assert upgraded.schema_version() == SCHEMA_VERSION == 5
        assert_upgrade_kept_old_origin_and_stores_route_and_trace(upgraded)


def test_version_2_database_gains_the_reruns_table_keeping_its_entries(new_database: str) -> None:
    """A version 2 database is upgraded: its entry reads back as it was, re-runs can be marked."""
    with psycopg.connect(new_database, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {VERSION_TABLE} (version integer NOT NULL)")
        conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (2)")  # noqa: S608
        conn.execute(VERSION_1)
        for column in ("route", "traceparent", "tracestate"):
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} text")
        conn.execute(
            f"INSERT INTO {TABLE} (key, fingerprint, dag_id, dag_run_id, status, track,"  # noqa: S608
            " created_at, updated_at, source_topic, source_partition, source_offset, route)"
            " VALUES ('k1', 'fp-1', 'etl', 'run-k1', 'triggered', true, now(), now(),"
            " 'requests', 2, 41, 'orders')"
        )

    with PostgresStore(new_database, RETENTION) as upgraded:
        assert upgraded.schema_version() == SCHEMA_VERSION == 5
        (entry,) = upgraded.tracked_runs()
        marked = upgraded.mark_rerun("k1", "r1", evidence="clock", at=("requests", 2, 50))
        assert upgraded.get_rerun("k1", "r1") == marked

    assert (entry.key, entry.dag_run_id, entry.status) == ("k1", "run-k1", EntryStatus.TRIGGERED)
    assert entry.origin == RequestOrigin("requests", 2, 41, None, route="orders")
    assert marked.claimed_here


def test_version_3_database_gains_the_refusals_table_keeping_its_rows(
    new_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version 3 database is upgraded: its entry and re-run mark stay, refusals are kept."""
    with monkeypatch.context() as previous:
        previous.setattr(postgres_schema, "SCHEMA_VERSION", 3)  # the previous release's steps
        with PostgresStore(new_database, RETENTION) as old:
            assert old.schema_version() == 3
            old.record(
                "k1", fingerprint="fp", dag_id="etl", dag_run_id="r", status=EntryStatus.TRIGGERED
            )
            old.record_rerun("k1", "r1", run_state="queued", at=("requests", 2, 50))
    at = ("requests", 2, 51)
    refused = RememberedRefusal("k2", at, "dag_not_allowed", "no", {}, datetime.now(UTC))

    with PostgresStore(new_database, RETENTION) as upgraded:
        assert upgraded.schema_version() == SCHEMA_VERSION == 5
        entry = upgraded.get("k1")
        mark = upgraded.get_rerun("k1", "r1")
        upgraded.release("k2", refusal=refused)
        found = upgraded.refusal_at("k2", at)

    assert entry is not None and (entry.dag_run_id, entry.status) == ("r", EntryStatus.TRIGGERED)
    assert mark is not None and (mark.status, mark.run_state) == (RerunStatus.DONE, "queued")
    assert found is not None and (found.code, found.details) == ("dag_not_allowed", {})


def test_version_4_database_gains_the_flow_tables_keeping_its_rows(
    new_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version 4 database is upgraded in place: its rows stay, requests can be deferred."""
    at = ("requests", 2, 51)
    refused = RememberedRefusal("k2", at, "dag_not_allowed", "no", {}, datetime.now(UTC))
    with monkeypatch.context() as previous:
        previous.setattr(postgres_schema, "SCHEMA_VERSION", 4)  # the previous release's steps
        with PostgresStore(new_database, RETENTION) as old:
            assert old.schema_version() == 4
            old.record(
                "k1", fingerprint="fp", dag_id="etl", dag_run_id="r", status=EntryStatus.TRIGGERED
            )
            old.release("k2", refusal=refused)
    deferred = DeferredRequest(
        *("k3", "etl", "fp-3", "{}", "requests", 2, 52, None, b"\x00", None, (("h", b""),)),
        *(None, None, None, DeferralReason.NOT_BEFORE, None),
    )

    with PostgresStore(new_database, RETENTION) as upgraded:
        assert upgraded.schema_version() == SCHEMA_VERSION == 5
        entry = upgraded.get("k1")
        found = upgraded.refusal_at("k2", at)
        assert upgraded.defer(deferred)
        (parked,) = upgraded.due_deferred()
        assert upgraded.take_flow_lease("me", timedelta(minutes=1))

    assert entry is not None and (entry.dag_run_id, entry.status) == ("r", EntryStatus.TRIGGERED)
    assert found is not None and found.code == "dag_not_allowed"
    assert parked == replace(deferred, seq=parked.seq, created_at=parked.created_at)


def test_newer_schema_version_is_a_config_error(new_database: str) -> None:
    """A database upgraded by a newer release is refused with an operator action."""
    PostgresStore(new_database, RETENTION).close()
    with psycopg.connect(new_database, autocommit=True) as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (SCHEMA_VERSION + 1,))  # noqa: S608

    with pytest.raises(ConfigError, match="Operator action"):
        PostgresStore(new_database, RETENTION)


def test_read_only_database_with_a_current_schema_opens_reads_and_holds_writes(
    new_database: str,
) -> None:
    """A replica starting on a read-only primary opens: reads answer, writes are held."""
    with PostgresStore(new_database, RETENTION) as first:
        first.mark_pending("k1", fingerprint="fp", dag_id="etl", dag_run_id="r")

    with read_only(new_database), PostgresStore(new_database, RETENTION) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert (entry := store.get("k1")) is not None and entry.status is EntryStatus.PENDING
        with pytest.raises(StoreUnavailableError, match="read-only transaction"):
            store.mark_pending("k2", fingerprint="fp", dag_id="etl", dag_run_id="r2")
        with pytest.raises(StoreUnavailableError, match="read-only transaction"):
            store.record(
                "k1", fingerprint="fp", dag_id="etl", dag_run_id="r", status=EntryStatus.TRIGGERED
            )
        assert store.get_rerun("k1", "r1") is None
        with pytest.raises(StoreUnavailableError, match="read-only transaction"):
            store.mark_rerun("k1", "r1", evidence=None, at=("requests", 0, 1))
        with pytest.raises(StoreUnavailableError, match="read-only transaction"):
            store.record_rerun("k1", "r1", run_state=None, at=("requests", 0, 1), track=True)
        at = ("requests", 0, 1)
        assert store.refusal_at("k1", at) is None
        refused = RememberedRefusal("k1", at, "dag_not_allowed", "no", {}, datetime.now(UTC))
        with pytest.raises(StoreUnavailableError, match="read-only transaction"):
            store.release("k1", refusal=refused)


def test_read_only_database_without_the_schema_is_a_config_error(new_database: str) -> None:
    """An empty read-only database cannot get its schema: a start-up error naming the setting."""
    with read_only(new_database), pytest.raises(ConfigError, match=r"STORE_URL.*read-only"):
        PostgresStore(new_database, RETENTION)


def test_unreachable_database_is_a_config_error_naming_the_setting() -> None:
    """A server that refuses connections fails at once, naming TRIGGER_CONSUMER_STORE_URL."""
    with pytest.raises(ConfigError, match="TRIGGER_CONSUMER_STORE_URL"):
        open_store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", RETENTION)


def test_password_never_shows_in_errors(new_database: str) -> None:
    """A password in the URL is masked in the store's name and its error messages."""
    url = new_database.replace("postgres@", "postgres:s3cret-pw@").replace("/t_", "/missing_t_")
    assert "s3cret-pw" not in display_url(url)

    with pytest.raises(ConfigError) as raised:
        open_store(url, RETENTION)

    assert "s3cret-pw" not in str(raised.value)


def test_claims_from_two_pools_have_one_winner(new_database: str) -> None:
    """Two stores (as two replicas) claiming the same keys at once always agree on one holder."""
    stores = [PostgresStore(new_database, RETENTION) for _ in range(2)]
    keys = [f"k{index}" for index in range(60)]
    seen: dict[tuple[int, str], str] = {}
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        barrier.wait(timeout=10)
        for key in keys:
            own = stores[index % 2]
            entry = own.mark_pending(key, fingerprint=f"fp-{index}", dag_id="etl", dag_run_id=key)
            seen[(index, key)] = entry.fingerprint

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for key in keys:
            winner = stores[0].get(key)
            assert winner is not None
            assert {seen[(index, key)] for index in range(8)} == {winner.fingerprint}
    finally:
        for opened in stores:
            opened.close()


def _skewed(offset: timedelta) -> Callable[[], datetime]:
    """A replica's wall clock, ``offset`` away from the true time."""
    return lambda: datetime.now(UTC) + offset


@pytest.mark.parametrize(
    ("holder_skew", "taker_skew"),
    [(timedelta(0), timedelta(minutes=10)), (timedelta(minutes=-10), timedelta(0))],
    ids=["taker-clock-ahead", "holder-clock-behind"],
)
def test_a_replica_with_a_skewed_clock_never_takes_a_live_lease(
    new_database: str, holder_skew: timedelta, taker_skew: timedelta
) -> None:
    """Leases are timed by the database's clock: minutes of skew between replicas steal nothing."""
    ttl = timedelta(seconds=60)
    with (
        PostgresStore(new_database, RETENTION, clock=_skewed(holder_skew)) as holder,
        PostgresStore(new_database, RETENTION, clock=_skewed(taker_skew)) as taker,
    ):
        holder.record(
            "k1",
            fingerprint="fp",
            dag_id="etl",
            dag_run_id="run-k1",
            status=EntryStatus.TRIGGERED,
            track=True,
        )
        assert [e.key for e in holder.lease_tracked("holder", ttl)] == ["k1"]

        assert taker.lease_tracked("taker", ttl) == []
        assert taker.renew_leases("taker", ttl, ["k1"]) == set()
        assert taker.mark_completed("k1", "success", owner="taker") is False
        assert holder.renew_leases("holder", ttl, ["k1"]) == {"k1"}


def test_a_renewal_never_shortens_the_fence_before_a_publish(new_database: str) -> None:
    """A short renewal after a long fence leaves the lease ending where the fence put it."""
    with PostgresStore(new_database, RETENTION) as store:
        store.record(
            "k1",
            fingerprint="fp",
            dag_id="etl",
            dag_run_id="r",
            status=EntryStatus.TRIGGERED,
            track=True,
        )
        store.lease_tracked("a", timedelta(seconds=10))
        assert store.renew_leases("a", timedelta(minutes=5), ["k1"]) == {"k1"}
        assert store.renew_leases("a", timedelta(seconds=10), ["k1"]) == {"k1"}

        with psycopg.connect(new_database) as conn:
            row = conn.execute(f"SELECT lease_until - now() FROM {TABLE}").fetchone()  # noqa: S608

    assert row is not None
    assert row[0] > timedelta(minutes=4)
