"""Tests of consumer/tracking/lease.py: one `completed` per run when replicas share the store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.airflow import AirflowApi
from consumer.kafka_io.sink import DEFAULT_ACK_TIMEOUT
from consumer.outcome import Outcome
from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin, open_store
from consumer.store.sqlite import SqliteStore
from consumer.tracking import CompletionTracker
from consumer.tracking.lease import PUBLISH_BOUND, LeaseKeeper
from devstack.airflow import AirflowServer
from tests.faults.proxy import FaultProxy
from tests.faults.store import MarkCompletedFailsOnce
from tests.store.test_sqlite import ManualClock
from tests.tracking.test_tracker import FAST_INTERVAL, POLL_EVERY, Collected
from tests.tracking.tracked import RETENTION, RUN_TIMEOUT, trigger_tracked
from tests.waiting import wait_until

SHORT_LEASE = timedelta(seconds=2)


class HeldPublish:
    """A fault-injecting publish callback: its first publish waits for ``release`` (a slow ack).

    Later publishes are acknowledged at once. ``held`` is the key of the held publish.
    """

    def __init__(self) -> None:
        """Hold nothing yet."""
        self.outcomes: list[Outcome] = []
        self.held: str | None = None
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, outcome: Outcome, origin: RequestOrigin | None) -> None:
        """Wait for ``release`` on the first call, then keep ``outcome`` (the broker acked)."""
        if not self.entered.is_set():
            self.held = outcome.idempotency_key
            self.entered.set()
            assert self.release.wait(RUN_TIMEOUT), "the test never released the held publish"
        self.outcomes.append(outcome)


def _wait_ended(client: AirflowApi, dag_id: str, run_ids: list[str]) -> None:
    """Wait until Airflow says every run of ``run_ids`` succeeded."""

    def ended() -> bool:
        runs = [client.get_run(dag_id, run_id) for run_id in run_ids]
        return all(run is not None and run.state == "success" for run in runs)

    wait_until(ended, timeout=RUN_TIMEOUT, interval=POLL_EVERY, what="the runs to succeed")


def test_a_replica_slowed_past_its_lease_sends_no_second_completed(
    airflow3: AirflowServer, new_database: str, client_for: Callable[..., AirflowApi]
) -> None:
    """A publishes slowly; B takes the runs A's lease no longer covers; A never re-sends them.

    Replica A leases two ended runs and publishes one at a time; its first publish hangs
    (a slow broker ack) far past A's lease. B takes over the second run, publishes and marks
    it. When A's ack finally comes, A publishes nothing more: the run B completed is not
    A's any more. The run A was publishing stays A's (the fence before a publish covers
    it), so B never sends it.
    """
    client = client_for(airflow3)
    stores = [open_store(new_database, RETENTION) for _ in range(2)]
    try:
        made = [trigger_tracked(stores[0], client, "devstack_plain") for _ in range(2)]
        _wait_ended(client, "devstack_plain", [run.dag_run_id for _, run in made])
        slow_publish = HeldPublish()
        slow = CompletionTracker(
            stores[0],
            client,
            slow_publish,
            stop=threading.Event(),
            interval=FAST_INTERVAL,
            concurrency=1,
            owner="replica-a",
            lease_ttl=SHORT_LEASE,
        )
        published = Collected()
        other = CompletionTracker(
            stores[1],
            client,
            published,
            stop=threading.Event(),
            interval=FAST_INTERVAL,
            owner="replica-b",
            lease_ttl=SHORT_LEASE,
        )
        with ThreadPoolExecutor(1) as pool:
            slow_poll = pool.submit(slow.poll_once)
            wait_until(slow_publish.entered.is_set, timeout=RUN_TIMEOUT, what="A's publish")
            (taken,) = {key for key, _ in made} - {slow_publish.held}

            def other_completed() -> bool:
                other.poll_once()
                return taken in published.by_key()

            wait_until(other_completed, timeout=RUN_TIMEOUT, interval=POLL_EVERY, what="B's reply")
            slow_publish.release.set()
            slow_poll.result(timeout=RUN_TIMEOUT)

        assert [o.idempotency_key for o in slow_publish.outcomes] == [slow_publish.held]
        assert [o.idempotency_key for o in published.outcomes] == [taken]
        assert stores[0].tracked_runs() == []
        assert (slow.counts.completed, other.counts.completed) == (1, 1)
    finally:
        for opened in stores:
            opened.close()


def test_a_replica_whose_clock_runs_ahead_leaves_a_live_lease_alone(
    airflow3: AirflowServer, new_database: str, client_for: Callable[..., AirflowApi]
) -> None:
    """A tracker and store ten minutes ahead of the holder neither leases nor looks at its run."""
    client = client_for(airflow3)
    ahead: Callable[[], datetime] = lambda: datetime.now(UTC) + timedelta(minutes=10)  # noqa: E731
    holder = open_store(new_database, RETENTION)
    skewed = open_store(new_database, RETENTION, clock=ahead)
    try:
        trigger_tracked(holder, client, "devstack_plain")
        assert len(holder.lease_tracked("replica-a", timedelta(minutes=1))) == 1
        published = Collected()
        tracker = CompletionTracker(
            skewed,
            client,
            published,
            stop=threading.Event(),
            interval=FAST_INTERVAL,
            clock=ahead,
            owner="replica-b",
        )

        assert tracker.poll_once() == 0

        assert tracker.counts.checks == 0
        assert published.outcomes == []
    finally:
        holder.close()
        skewed.close()


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the current reading."""
        return self.now


def _tracked(store: SqliteStore, *keys: str) -> None:
    """Record ``keys`` as triggered, tracked runs."""
    for key in keys:
        store.record(
            key,
            fingerprint="fp",
            dag_id="etl",
            dag_run_id=f"run-{key}",
            status=EntryStatus.TRIGGERED,
            track=True,
        )


def test_leases_are_renewed_once_a_third_of_them_has_passed(tmp_path: Path) -> None:
    """Before a third of the lease no renewal happens; after it the held leases last a new ttl."""
    clock, ticks, ttl = ManualClock(), Ticks(), timedelta(seconds=30)
    with SqliteStore(tmp_path / "s.db", RETENTION, clock=clock) as store:
        _tracked(store, "k1")
        keeper = LeaseKeeper(store, "a", ttl, monotonic=ticks)
        assert [e.key for e in keeper.take(10)] == ["k1"]
        clock.advance(timedelta(seconds=9))
        ticks.now = 9.0
        keeper.renew_if_due()  # not due: the lease still ends at 30 s
        clock.advance(timedelta(seconds=22))
        assert [e.key for e in store.lease_tracked("b", ttl)] == ["k1"]

        keeper = LeaseKeeper(store, "b", ttl, monotonic=ticks)
        assert [e.key for e in keeper.take(10)] == ["k1"]
        clock.advance(timedelta(seconds=11))
        ticks.now += 11
        keeper.renew_if_due()  # due: the lease now ends 30 s after this
        clock.advance(timedelta(seconds=25))
        assert store.lease_tracked("c", ttl) == []
        assert keeper.holds("k1")


def test_a_run_taken_over_is_dropped_and_its_publish_refused(tmp_path: Path) -> None:
    """Once another owner holds a run, renewal drops it and the fence before publishing fails."""
    clock, ticks, ttl = ManualClock(), Ticks(), timedelta(seconds=30)
    with SqliteStore(tmp_path / "s.db", RETENTION, clock=clock) as store:
        _tracked(store, "k1", "k2")
        keeper = LeaseKeeper(store, "a", ttl, monotonic=ticks)
        keeper.take(10)
        clock.advance(ttl * 2)
        ticks.now = 60.0
        assert [e.key for e in store.lease_tracked("b", ttl, limit=1)] == ["k1"]

        keeper.renew_if_due()

        assert (keeper.holds("k1"), keeper.holds("k2")) == (False, True)
        assert keeper.fence("k1") is False
        assert keeper.mark_completed("k1", "success") is False
        assert keeper.fence("k2") is True
        assert keeper.mark_completed("k2", "success") is True
        assert [e.key for e in store.tracked_runs()] == ["k1"]


def test_the_fence_outlasts_the_sinks_longest_publish() -> None:
    """A fenced lease covers the sink's ack timeout (and metadata wait) whatever the poll lease."""
    with SqliteStore(":memory:", RETENTION) as store:
        keeper = LeaseKeeper(store, "a", timedelta(seconds=20))

        assert timedelta(seconds=DEFAULT_ACK_TIMEOUT) < PUBLISH_BOUND
        assert keeper.fence_ttl > PUBLISH_BOUND
        assert LeaseKeeper(store, "a", timedelta(hours=1)).fence_ttl == timedelta(hours=1)


def test_a_store_outage_between_the_ack_and_the_mark_sends_no_second_completed(
    airflow3: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """The reply was acknowledged, then marking it completed met a store outage: marked later.

    The next poll re-leased the run, still unmarked, and published its ``completed`` again
    (second adversarial review).
    """
    client = client_for(airflow3)
    key, run = trigger_tracked(store, client, "devstack_plain")
    _wait_ended(client, "devstack_plain", [run.dag_run_id])
    faulty = MarkCompletedFailsOnce(store)
    published = Collected()
    tracker = CompletionTracker(
        faulty,  # type: ignore[arg-type]
        client,
        published,
        stop=threading.Event(),
        interval=FAST_INTERVAL,
    )
    tracker.poll_once()
    assert faulty.failed

    def marked() -> bool:
        tracker.poll_once()
        found = store.get(key)
        return found is not None and found.completed_at is not None

    wait_until(marked, timeout=RUN_TIMEOUT, interval=POLL_EVERY, what="the run marked completed")
    assert [outcome.idempotency_key for outcome in published.outcomes] == [key]


def test_an_acknowledged_reply_is_marked_while_airflow_cannot_list(
    airflow3: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """Acknowledged, the mark met a store outage, then Airflow's listing failed: marked anyway.

    Nemesis seed 909: the mark waited for a listing that failed (API stopped), the replica
    was then paused past its lease, and another replica sent the reply again.
    """
    proxy = FaultProxy(airflow3.url)
    try:
        client = client_for(airflow3)
        key, run = trigger_tracked(store, client, "devstack_plain")
        _wait_ended(client, "devstack_plain", [run.dag_run_id])
        faulty = MarkCompletedFailsOnce(store)
        published = Collected()
        tracker = CompletionTracker(
            faulty,  # type: ignore[arg-type]
            client_for(airflow3, url=proxy.url),
            published,
            stop=threading.Event(),
            interval=FAST_INTERVAL,
        )
        tracker.poll_once()  # published; the mark failed
        assert faulty.failed
        proxy.fail_lists(503)
        tracker.poll_once()  # the listing fails: the mark must not wait for it
        found = store.get(key)
    finally:
        proxy.close()
    assert found is not None
    assert found.completed_at is not None
    assert [outcome.idempotency_key for outcome in published.outcomes] == [key]
