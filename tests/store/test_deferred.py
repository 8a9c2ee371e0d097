"""Tests of durable deferral in both stores: deferred.py, sqlite_deferred.py, postgres_deferred.py.

On SQLite every instant is the manual clock's; on PostgreSQL ``due_at``, the lease, the fence
and ``created_at`` follow the database server's clock, so these tests place instants
relative to ``store_now()`` and let real time pass where a lease must expire.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumer.store import IdempotencyStore
from consumer.store.deferred import DeferralReason, DeferredCount, DeferredRequest
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite import SqliteStore
from tests.store.stores import RETENTION, ManualClock, run_in_threads
from tests.waiting import wait_until

HOUR = timedelta(hours=1)
SHORT = timedelta(milliseconds=300)  # a lease short enough to outlive on PostgreSQL


def _request(key: str = "k1", offset: int = 1, **changes: Any) -> DeferredRequest:
    """A deferred request of DAG ``etl`` from ``requests``/0 at ``offset``, due now."""
    request = DeferredRequest(
        key=key,
        dag_id="etl",
        fingerprint=f"fp-{key}",
        request_json=f'{{"dag_id": "etl", "idempotency_key": "{key}"}}',
        topic="requests",
        partition=0,
        offset=offset,
        timestamp_ms=1_700_000_000_000 + offset,
        record_key=key.encode(),
        record_value=b'{"dag_id": "etl"}',
        headers=(),
        route=None,
        traceparent=None,
        tracestate=None,
        reason=DeferralReason.LIMIT,
        due_at=None,
    )
    return replace(request, **changes)


def _elapse(store: IdempotencyStore, clock: ManualClock, delta: timedelta) -> None:
    """Let ``delta`` pass on the store's clock: the manual one, or the database server's."""
    until = store.store_now() + delta
    clock.advance(delta)
    wait_until(lambda: store.store_now() >= until, timeout=10, what="the store's clock")


def _stored(store: IdempotencyStore, request: DeferredRequest) -> DeferredRequest:
    """Defer ``request`` and read it back (it must be due)."""
    assert store.defer(request)
    (found,) = [r for r in store.due_deferred() if (r.key, r.at) == (request.key, request.at)]
    return found


@pytest.fixture(params=["sqlite", "postgres"])
def twins(
    request: pytest.FixtureRequest, clock: ManualClock, db_path: Path
) -> Iterator[tuple[IdempotencyStore, IdempotencyStore]]:
    """Two store objects on one database (two replicas): one SQLite file, or one PostgreSQL."""
    if request.param == "sqlite":
        with (
            SqliteStore(db_path, RETENTION, clock=clock) as first,
            SqliteStore(db_path, RETENTION, clock=clock) as second,
        ):
            yield first, second
        return
    url = request.getfixturevalue("new_database")
    with (
        PostgresStore(url, RETENTION, clock=clock) as first,
        PostgresStore(url, RETENTION, clock=clock) as second,
    ):
        yield first, second


def test_defer_round_trips_every_field(store: IdempotencyStore) -> None:
    """Every field reads back as deferred: binary values, repeated headers, route, trace, due."""
    now = store.store_now()
    request = _request(
        record_key=b"\x00\xffkey",
        record_value=b"\x80\x81 not utf-8 \x00",
        headers=(("h", b"1"), ("bin", b"\x00\xff\xfe"), ("h", b"2"), ("empty", b"")),
        route="orders",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="rojo=00f067aa0ba902b7",
        reason=DeferralReason.NOT_BEFORE,
        due_at=now - timedelta(seconds=1),
    )

    found = _stored(store, request)

    assert found == replace(request, seq=found.seq, created_at=found.created_at)
    assert found.seq > 0 and found.created_at is not None
    assert abs(found.created_at - now) < timedelta(seconds=30)
    assert found.at == ("requests", 0, 1)


def test_defer_round_trips_absent_values(store: IdempotencyStore) -> None:
    """A request without record key, value, headers, timestamp, route or trace reads back so."""
    request = _request(record_key=None, record_value=None, timestamp_ms=None, released=True)

    found = _stored(store, request)

    assert found == replace(request, seq=found.seq, created_at=found.created_at)
    assert (found.record_key, found.record_value, found.headers) == (None, None, ())


def test_defer_is_idempotent_per_key_and_record(store: IdempotencyStore) -> None:
    """A second deferral of one key from one record changes nothing; another record's is new."""
    first = _stored(store, _request())

    again = store.defer(_request(request_json="{}", reason=DeferralReason.NOT_BEFORE))
    other_record = store.defer(_request(offset=2))
    other_key = store.defer(_request("k2"))

    assert (again, other_record, other_key) == (False, True, True)
    assert [(r.key, r.offset) for r in store.due_deferred()] == [("k1", 1), ("k1", 2), ("k2", 1)]
    assert store.due_deferred()[0] == first


def test_due_deferred_is_in_arrival_order_and_bounded(store: IdempotencyStore) -> None:
    """Rows come back by increasing ``seq``, the order they were deferred in, at most ``limit``."""
    for key, offset in (("k3", 7), ("k1", 9), ("k2", 8)):
        store.defer(_request(key, offset))

    listed = store.due_deferred()

    assert [r.key for r in listed] == ["k3", "k1", "k2"]
    assert [r.seq for r in listed] == sorted({r.seq for r in listed})
    assert [r.key for r in store.due_deferred(limit=2)] == ["k3", "k1"]


def test_seq_is_never_reused_after_a_forget(store: IdempotencyStore) -> None:
    """A request deferred after the newest one was forgotten still comes later."""
    store.defer(_request("k1"))
    store.defer(_request("k2"))
    (_, newest) = store.due_deferred()
    store.forget_deferred("k2", newest.at)

    store.defer(_request("k3"))

    assert store.due_deferred()[-1].seq > newest.seq


def test_due_deferred_of_one_dag_is_not_hidden_by_another_dags_backlog(
    store: IdempotencyStore,
) -> None:
    """With ``dag_id``, one DAG's rows alone, oldest first, whatever waits before them."""
    for offset in range(1, 6):
        store.defer(_request(f"flood-{offset}", offset))
    store.defer(_request("other", 9, dag_id="reports"))

    assert [r.key for r in store.due_deferred(limit=2, dag_id="etl")] == ["flood-1", "flood-2"]
    assert [r.key for r in store.due_deferred(limit=2, dag_id="reports")] == ["other"]
    assert store.due_deferred(dag_id="unknown") == []


def test_due_deferred_leaves_out_requests_not_yet_due(store: IdempotencyStore) -> None:
    """A ``due_at`` ahead of the store's clock is not due; one at or before it is."""
    now = store.store_now()
    store.defer(_request("later", 1, due_at=now + HOUR, reason=DeferralReason.NOT_BEFORE))
    store.defer(_request("past", 2, due_at=now - HOUR, reason=DeferralReason.NOT_BEFORE))
    store.defer(_request("limited", 3))

    assert [r.key for r in store.due_deferred()] == ["past", "limited"]


def test_a_deferred_request_becomes_due_on_the_store_clock(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """A request due shortly is listed once the store's clock passes its ``due_at``."""
    due_at = store.store_now() + SHORT
    store.defer(_request(due_at=due_at, reason=DeferralReason.NOT_BEFORE))
    assert store.due_deferred() == []

    _elapse(store, clock, SHORT)

    assert [r.key for r in store.due_deferred()] == ["k1"]


def test_postgres_times_deferral_by_the_database_clock(new_database: str) -> None:
    """On PostgreSQL a replica's skewed clock does not decide what is due, nor ``created_at``."""
    skewed = ManualClock(datetime.now().astimezone() + timedelta(days=2))
    with PostgresStore(new_database, RETENTION, clock=skewed) as store:
        now = store.store_now()
        store.defer(_request(due_at=now + HOUR, reason=DeferralReason.NOT_BEFORE))
        store.defer(_request("k2"))

        listed = store.due_deferred()

    assert abs(now - datetime.now().astimezone()) < timedelta(minutes=5)
    assert [r.key for r in listed] == ["k2"]
    assert listed[0].created_at is not None and listed[0].created_at - now < timedelta(minutes=5)


def test_forget_deferred_deletes_only_that_record(store: IdempotencyStore) -> None:
    """Forgetting a key at a record deletes that row alone, once."""
    store.defer(_request("k1", 1))
    store.defer(_request("k1", 2))

    assert store.forget_deferred("k1", ("requests", 0, 1))
    assert not store.forget_deferred("k1", ("requests", 0, 1))
    assert not store.forget_deferred("k9", ("requests", 0, 2))
    assert [(r.key, r.offset) for r in store.due_deferred()] == [("k1", 2)]


def test_deferred_counts_per_dag_and_reason(store: IdempotencyStore, clock: ManualClock) -> None:
    """Counts group by DAG and reason, each with its oldest request's ``created_at``."""
    assert store.deferred_counts() == []
    store.defer(_request("a1", 1))
    oldest = store.due_deferred()[0].created_at
    _elapse(store, clock, timedelta(milliseconds=50))
    store.defer(_request("a2", 2))
    store.defer(_request("a3", 3, reason=DeferralReason.NOT_BEFORE, due_at=store.store_now()))
    store.defer(_request("b1", 4, dag_id="reports"))

    counts = store.deferred_counts()

    assert oldest is not None
    assert [(c.dag_id, c.reason, c.count) for c in counts] == [
        ("etl", "limit", 2),
        ("etl", "not_before", 1),
        ("reports", "limit", 1),
    ]
    assert counts[0] == DeferredCount("etl", "limit", 2, oldest)
    assert counts[1].oldest_created_at > oldest


def test_release_deferred_lets_one_dags_requests_through(store: IdempotencyStore) -> None:
    """Release marks the DAG's rows released and due now; another DAG's rows are untouched."""
    later = store.store_now() + HOUR
    store.defer(_request("k1", 1, due_at=later, reason=DeferralReason.NOT_BEFORE))
    store.defer(_request("k2", 2))
    store.defer(_request("r1", 3, dag_id="reports", due_at=later))

    released = store.release_deferred("etl")

    assert released == 2
    assert [(r.key, r.released, r.due_at) for r in store.due_deferred()] == [
        ("k1", True, None),
        ("k2", True, None),
    ]
    assert store.release_deferred("nothing-waits") == 0


def test_retention_never_purges_deferred_requests(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Deferred rows are no idempotency entries: purge and purge_expired leave them be."""
    store.defer(_request())
    clock.advance(RETENTION * 3)

    store.purge(clock() + RETENTION)
    store.purge_expired()

    assert [r.key for r in store.due_deferred()] == ["k1"]


def test_the_flow_lease_has_one_owner_at_a_time(
    twins: tuple[IdempotencyStore, IdempotencyStore],
) -> None:
    """Two replicas on one database: the holder keeps and extends it, the other is refused."""
    first, second = twins

    assert first.take_flow_lease("a", HOUR)
    assert not second.take_flow_lease("b", HOUR)
    assert first.take_flow_lease("a", HOUR)
    second.drop_flow_lease("b")
    assert not second.take_flow_lease("b", HOUR)

    first.drop_flow_lease("a")

    assert second.take_flow_lease("b", HOUR)
    assert not first.take_flow_lease("a", HOUR)


def test_replicas_racing_for_the_free_lease_have_one_winner(
    twins: tuple[IdempotencyStore, IdempotencyStore],
) -> None:
    """Eight threads over two replicas take the free lease at once: exactly one wins."""
    won: list[str] = []

    def race(index: int) -> None:
        if twins[index % 2].take_flow_lease(f"owner-{index}", HOUR):
            won.append(f"owner-{index}")

    run_in_threads(8, race)

    assert len(won) == 1


def test_an_expired_flow_lease_goes_to_another_owner(
    twins: tuple[IdempotencyStore, IdempotencyStore], clock: ManualClock
) -> None:
    """Once its ttl passed on the store's clock, the lease is another replica's for the taking."""
    first, second = twins
    assert first.take_flow_lease("a", SHORT)

    _elapse(first, clock, SHORT)

    assert second.take_flow_lease("b", HOUR)
    assert not first.take_flow_lease("a", HOUR)


def test_set_rate_next_is_fenced_by_the_flow_lease(
    twins: tuple[IdempotencyStore, IdempotencyStore], clock: ManualClock
) -> None:
    """Only the unexpired lease holder records a DAG's next start; a deposed one cannot."""
    first, second = twins
    at = datetime.fromisoformat("2025-01-01T12:00:05+00:00")
    assert not first.set_rate_next("etl", at, "a")
    assert first.take_flow_lease("a", SHORT)

    assert first.set_rate_next("etl", at, "a")
    assert not second.set_rate_next("etl", at + HOUR, "b")
    assert second.rate_next(["etl", "reports"]) == {"etl": at}

    _elapse(first, clock, SHORT)
    assert not first.set_rate_next("etl", at + HOUR, "a")
    assert second.take_flow_lease("b", HOUR)
    assert second.set_rate_next("etl", at + 2 * HOUR, "b")
    assert second.set_rate_next("reports", at, "b")
    assert not first.set_rate_next("etl", at, "a")

    assert first.rate_next(["etl", "reports", "other"]) == {
        "etl": at + 2 * HOUR,
        "reports": at,
    }
    assert first.rate_next([]) == {}


def test_naive_instants_are_refused(store: IdempotencyStore) -> None:
    """A ``due_at`` or rate instant without a zone is a caller's bug, refused by both stores."""
    naive = datetime(2025, 1, 1, 12)  # no zone: the bug under test
    assert store.take_flow_lease("a", HOUR)

    with pytest.raises(ValueError, match="naive"):
        store.defer(_request(due_at=naive))
    with pytest.raises(ValueError, match="naive"):
        store.set_rate_next("etl", naive, "a")
    assert store.due_deferred() == []
