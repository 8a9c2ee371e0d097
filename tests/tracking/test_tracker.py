"""Tests of consumer/tracking/tracker.py: completed replies for runs on real Airflow 3 and 2."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from consumer.airflow import AirflowApi, TriggerResult
from consumer.answering import Answerer
from consumer.contract import Status
from consumer.errors import ConfigError, ErrorCode
from consumer.metrics import Metrics
from consumer.outcome import Outcome, source_at
from consumer.pipeline.reply import reply_record
from consumer.record import OutboundRecord
from consumer.run_id import run_id_for
from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin, StoredEntry, open_store
from consumer.tracking.completion import UNKNOWN_SOURCE, completed_outcome
from consumer.tracking.tracker import CompletionTracker
from devstack.airflow import AirflowServer
from tests.faults.proxy import FaultProxy
from tests.tracking.tracked import (
    RETENTION,
    RUN_TIMEOUT,
    TRACE,
    entry,
    new_key,
    origin_for,
    trigger_tracked,
)
from tests.waiting import wait_until

POLL_EVERY = 0.5  # seconds between poll_once calls in the waits below
FAST_INTERVAL = 0.2  # seconds: a tracker that re-checks quickly...
FAST_MAX_DELAY = 1.0  # ...and backs off to at most a second


class Collected:
    """A publish callback that keeps every outcome it was given (the worker's sink acks)."""

    def __init__(self) -> None:
        """Start with no outcomes."""
        self.outcomes: list[Outcome] = []
        self.origins: dict[str | None, RequestOrigin | None] = {}

    def __call__(self, outcome: Outcome, origin: RequestOrigin | None) -> None:
        """Keep ``outcome``, and the origin given for its headers by key."""
        self.outcomes.append(outcome)
        self.origins[outcome.idempotency_key] = origin

    def by_key(self) -> dict[str | None, Outcome]:
        """The outcomes by idempotency key."""
        return {outcome.idempotency_key: outcome for outcome in self.outcomes}


class BrokerDownError(Exception):
    """Raised by the fault-injecting publish: the broker never acknowledged."""


class Refusing:
    """A fault-injecting publish callback: no reply is ever acknowledged (a crash before ack)."""

    def __init__(self) -> None:
        """Start with no attempts."""
        self.attempts = 0

    def __call__(self, outcome: Outcome, origin: RequestOrigin | None) -> None:
        """Count the attempt and fail it."""
        self.attempts += 1
        raise BrokerDownError(f"no ack for {outcome.idempotency_key}")


def poll_until(tracker: CompletionTracker, done: Callable[[], bool], what: str) -> None:
    """Call ``poll_once`` until ``done`` holds, as the tracking thread would."""

    def poll() -> bool:
        tracker.poll_once()
        return done()

    wait_until(poll, timeout=RUN_TIMEOUT, interval=POLL_EVERY, what=what)


def test_tracker_refuses_non_positive_settings(
    store: IdempotencyStore, airflow3: AirflowServer, client_for: Callable[..., AirflowApi]
) -> None:
    """A zero interval or concurrency is a ValueError at construction, not a busy loop."""
    airflow = client_for(airflow3)
    with pytest.raises(ValueError, match="positive"):
        CompletionTracker(store, airflow, Collected(), stop=threading.Event(), interval=0)
    with pytest.raises(ValueError, match="positive"):
        CompletionTracker(store, airflow, Collected(), stop=threading.Event(), concurrency=0)


def test_completion_record_is_keyed_and_sent_to_the_requested_reply_topic() -> None:
    """The completed reply goes to the request's reply topic, keyed, with its correlation id."""
    outcome = completed_outcome(_tracked_entry(origin_for("k-1")), _run("failed"))

    record = reply_record(outcome, default_topic="replies", worker="w/1")

    assert (record.topic, record.key, record.headers) == (
        "team-replies",
        b"k-1",
        (("correlation-id", b"corr-k-1"),),
    )
    assert record.value is not None
    reply = json.loads(record.value)
    assert (reply["status"], reply["run_state"], reply["error"]["code"]) == (
        "completed",
        "failed",
        "run_failed",
    )
    assert reply["source"] == {
        "topic": "requests",
        "partition": 1,
        "offset": 7,
        "timestamp": "2025-01-01T00:00:00Z",
    }


class ListSink:
    """A sink that acknowledges at once by keeping the records (stands for RecordSink)."""

    def __init__(self) -> None:
        """Start empty."""
        self.batches: list[list[OutboundRecord]] = []

    def publish(self, records: Sequence[OutboundRecord]) -> None:
        """Keep one batch."""
        self.batches.append(list(records))


def answerer_over(sink: ListSink, trace_context: bool = True) -> Answerer:
    """The Answerer the worker builds, publishing to ``sink``."""
    return Answerer(
        sink,  # type: ignore[arg-type]  # stands for RecordSink: publish is all it uses
        reply_topic="replies",
        dlq_topic="dlq",
        worker="w/1",
        metrics=Metrics(),
        stop=threading.Event(),
        trace_context=trace_context,
    )


def test_publish_completed_hands_one_completion_record_to_the_sink() -> None:
    """The publish callback the worker gives the tracker sends exactly the completion record."""
    sink = ListSink()
    outcome = completed_outcome(_tracked_entry(None), _run("success"))

    answerer_over(sink).publish_completed(outcome, None)

    assert sink.batches == [[reply_record(outcome, default_topic="replies", worker="w/1")]]


@pytest.mark.parametrize("trace_context", [True, False])
def test_completed_reply_echoes_the_stored_route_and_trace_as_a_first_reply_does(
    trace_context: bool,
) -> None:
    """publish_completed adds the origin's route and trace headers, the trace only when on."""
    sink = ListSink()
    answerer = answerer_over(sink, trace_context)
    origin = origin_for("k-1")
    outcome = completed_outcome(_tracked_entry(origin), _run("success"))

    answerer.publish_completed(outcome, origin)
    answerer.publish_completed(outcome, replace(origin, route=None, trace=None))

    traced = (("traceparent", TRACE.traceparent.encode()), ("tracestate", b"acme=t61rcWkgMzE"))
    plain = reply_record(outcome, default_topic="replies", worker="w/1")
    records = [record for batch in sink.batches for record in batch]
    assert [record.headers for record in records] == [
        (*plain.headers, ("route", b"orders"), *(traced if trace_context else ())),
        plain.headers,
    ]
    assert {record.value for record in records} == {plain.value}


def test_success_and_failed_runs_get_one_completed_reply_each(
    airflow: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """A run ending success gets `completed` without error; a failed one gets run_failed, once."""
    client = client_for(airflow)
    ok_key, ok_run = trigger_tracked(store, client, "devstack_plain")
    bad_key, bad_run = trigger_tracked(store, client, "devstack_fails")
    published = Collected()
    tracker = CompletionTracker(
        store,
        client,
        published,
        stop=threading.Event(),
        concurrency=2,
        interval=FAST_INTERVAL,
        max_delay=FAST_MAX_DELAY,
    )

    poll_until(tracker, lambda: len(published.outcomes) == 2, "both completed replies")

    ok, bad = published.by_key()[ok_key], published.by_key()[bad_key]
    assert (ok.status, ok.error, ok.run_state) == (Status.COMPLETED, None, "success")
    assert (ok.dag_run_id, ok.run_url, ok.dag_id) == (
        ok_run.dag_run_id,
        ok_run.run_url,
        "devstack_plain",
    )
    assert (ok.correlation_id, ok.reply_topic, ok.source.offset) == (
        f"corr-{ok_key}",
        "team-replies",
        7,
    )
    assert (bad.status, bad.error_code, bad.run_state) == (
        Status.COMPLETED,
        ErrorCode.RUN_FAILED,
        "failed",
    )
    assert bad.error is not None
    assert bad.error.details == {"run_state": "failed"}
    assert bad.dag_run_id == bad_run.dag_run_id
    # the stored origin travels with the outcome: the reply's headers echo its route and trace
    assert published.origins == {ok_key: origin_for(ok_key), bad_key: origin_for(bad_key)}
    assert entry(store, ok_key).run_state == "success"
    assert entry(store, bad_key).completed_at is not None
    assert store.tracked_runs() == []
    assert tracker.poll_once() == 0
    assert len(published.outcomes) == 2
    assert tracker.counts.completed == 2


def test_unacknowledged_reply_is_sent_again_by_a_restarted_tracker(
    airflow3: AirflowServer,
    store_url: str,
    client_for: Callable[..., AirflowApi],
    stop: threading.Event,
) -> None:
    """A publish that fails leaves the run tracked; a tracker over the reopened store sends it."""
    client = client_for(airflow3)
    first_store = open_store(store_url, RETENTION)
    key, _ = trigger_tracked(first_store, client, "devstack_plain")
    refusing = Refusing()
    crashed = CompletionTracker(
        first_store,
        client,
        refusing,
        stop=threading.Event(),
        interval=FAST_INTERVAL,
        max_delay=FAST_MAX_DELAY,
    )

    poll_until(crashed, lambda: refusing.attempts >= 1, "the run to finish and publish to fail")
    assert [e.key for e in first_store.tracked_runs()] == [key]
    first_store.close()

    reopened = open_store(store_url, RETENTION)
    published = Collected()
    restarted = CompletionTracker(
        reopened, client, published, stop=stop, interval=FAST_INTERVAL, max_delay=FAST_MAX_DELAY
    )
    restarted.start()
    try:
        wait_until(lambda: published.outcomes, timeout=RUN_TIMEOUT, what="the completed reply")
        wait_until(lambda: reopened.tracked_runs() == [], timeout=RUN_TIMEOUT, what="marked")
    finally:
        stop.set()
        assert restarted.join(timeout=RUN_TIMEOUT)
        reopened.close()

    assert [(o.idempotency_key, o.run_state) for o in published.outcomes] == [(key, "success")]
    assert restarted.fatal is None


def test_entry_older_than_the_horizon_gets_a_last_check_and_is_abandoned(
    airflow2: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """Past the horizon an unfinished run is looked up once more, gets no reply, leaves tracking."""
    client = client_for(airflow2)
    key = new_key()
    store.record(
        key,
        fingerprint="fp",
        dag_id="devstack_plain",
        dag_run_id=run_id_for(key),  # never triggered: Airflow does not know it
        status=EntryStatus.TRIGGERED,
        track=True,
    )
    published = Collected()
    later = datetime.now(UTC) + timedelta(hours=2)
    tracker = CompletionTracker(
        store,
        client,
        published,
        stop=threading.Event(),
        horizon=timedelta(hours=1),
        clock=lambda: later,
        interval=FAST_INTERVAL,
        max_delay=FAST_MAX_DELAY,
    )

    assert tracker.poll_once() == 0

    assert published.outcomes == []
    assert (tracker.counts.abandoned, tracker.counts.checks) == (1, 1)
    assert store.tracked_runs() == []
    assert entry(store, key).abandoned_at is not None
    assert entry(store, key).completed_at is None


def test_finished_run_past_the_horizon_gets_its_completed_reply_on_the_last_check(
    airflow3: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """A run that ended but was not seen yet is answered `completed` by the last check."""
    client = client_for(airflow3)
    key, result = trigger_tracked(store, client, "devstack_plain")
    wait_until(
        lambda: (
            (run := client.get_run("devstack_plain", result.dag_run_id)) is not None
            and run.state == "success"
        ),
        timeout=RUN_TIMEOUT,
        interval=POLL_EVERY,
        what="the run to succeed",
    )
    published = Collected()
    later = datetime.now(UTC) + timedelta(hours=2)
    tracker = CompletionTracker(
        store,
        client,
        published,
        stop=threading.Event(),
        horizon=timedelta(hours=1),
        clock=lambda: later,
    )

    assert tracker.poll_once() == 1

    assert [(o.idempotency_key, o.run_state) for o in published.outcomes] == [(key, "success")]
    assert tracker.counts.abandoned == 0


def test_run_whose_tracker_died_is_completed_once_by_another_replica(
    airflow3: AirflowServer, new_database: str, client_for: Callable[..., AirflowApi]
) -> None:
    """On a shared store a dead replica's lease expires and another sends the one `completed`."""
    client = client_for(airflow3)
    stores = [open_store(new_database, RETENTION) for _ in range(2)]
    try:
        key, _ = trigger_tracked(stores[0], client, "devstack_plain")
        refusing = Refusing()
        dying = CompletionTracker(
            stores[0],
            client,
            refusing,
            stop=threading.Event(),
            interval=FAST_INTERVAL,
            max_delay=FAST_MAX_DELAY,
            lease_ttl=timedelta(seconds=3),
        )
        poll_until(dying, lambda: refusing.attempts >= 1, "the run to end and publish to fail")
        published = Collected()
        survivor = CompletionTracker(
            stores[1],
            client,
            published,
            stop=threading.Event(),
            interval=FAST_INTERVAL,
            max_delay=FAST_MAX_DELAY,
        )
        assert survivor.poll_once() == 0  # the dead replica's lease still holds
        assert survivor.counts.checks == 0

        poll_until(survivor, lambda: bool(published.outcomes), "the other replica's reply")

        assert [(o.idempotency_key, o.run_state) for o in published.outcomes] == [(key, "success")]
        assert stores[1].tracked_runs() == []
        assert survivor.poll_once() == 0
        assert len(published.outcomes) == 1
    finally:
        for opened in stores:
            opened.close()


@pytest.fixture
def proxy(airflow3: AirflowServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the real Airflow 3."""
    injector = FaultProxy(airflow3.url)
    yield injector
    injector.close()


def test_without_a_list_endpoint_runs_are_checked_one_by_one_with_a_backoff(
    airflow3: AirflowServer,
    store: IdempotencyStore,
    client_for: Callable[..., AirflowApi],
    proxy: FaultProxy,
) -> None:
    """Listing answered 404: the run is asked for alone, and not again before its backoff."""
    proxy.fail_lists(404)
    client = client_for(airflow3, url=proxy.url)
    key = new_key()
    store.record(
        key,
        fingerprint="fp",
        dag_id="devstack_plain",
        dag_run_id=run_id_for(key),
        status=EntryStatus.TRIGGERED,
        track=True,
    )
    tracker = CompletionTracker(store, client, Collected(), stop=threading.Event(), interval=60.0)

    assert tracker.poll_once() == 0
    assert tracker.poll_once() == 0

    assert tracker.counts.checks == 1
    run_path = f"/api/v2/dags/devstack_plain/dagRuns/{run_id_for(key)}"
    assert [request for request in proxy.requests if request[1] == run_path] == [("GET", run_path)]
    assert [e.key for e in store.tracked_runs()] == [key]


def test_a_failed_listing_skips_the_poll_and_the_next_one_completes_the_run(
    airflow3: AirflowServer,
    store: IdempotencyStore,
    client_for: Callable[..., AirflowApi],
    proxy: FaultProxy,
) -> None:
    """Listing answered 503: no run is asked for alone (no flood); after healing it completes."""
    client = client_for(airflow3, url=proxy.url)
    key, _ = trigger_tracked(store, client, "devstack_plain")
    published = Collected()
    tracker = CompletionTracker(
        store, client, published, stop=threading.Event(), interval=FAST_INTERVAL
    )
    proxy.fail_lists(503)

    assert tracker.poll_once() == 0

    assert tracker.counts.errors == 1
    assert not [path for method, path in proxy.requests if method == "GET" and key in path]
    proxy.heal()
    poll_until(tracker, lambda: key in published.by_key(), "completed after the listing healed")
    assert published.by_key()[key].run_state == "success"


def test_refused_credentials_stop_the_tracking_thread(
    airflow3: AirflowServer,
    store: IdempotencyStore,
    client_for: Callable[..., AirflowApi],
    stop: threading.Event,
) -> None:
    """A ConfigError from Airflow ends run() without raising and is kept as ``fatal``."""
    good = client_for(airflow3)
    trigger_tracked(store, good, "devstack_plain")
    wrong = client_for(airflow3, password="not-the-password")
    tracker = CompletionTracker(
        store, wrong, Collected(), stop=stop, interval=FAST_INTERVAL, max_delay=FAST_MAX_DELAY
    )

    tracker.start()

    assert tracker.join(timeout=RUN_TIMEOUT)
    assert isinstance(tracker.fatal, ConfigError)
    assert not stop.is_set()


def _run(state: str) -> TriggerResult:
    """The tracked run of key ``k-1`` in ``state``."""
    return TriggerResult("etl_daily", "kafka__k-1", state, None, "http://ui", True, None, 1)


def _tracked_entry(origin: RequestOrigin | None) -> StoredEntry:
    """A tracked store entry for key ``k-1`` with the given origin."""
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    return StoredEntry(
        key="k-1",
        fingerprint="fp",
        dag_id="etl_daily",
        dag_run_id="kafka__k-1",
        status=EntryStatus.TRIGGERED,
        run_state="queued",
        logical_date=None,
        run_url=None,
        track=True,
        completed_at=None,
        created_at=moment,
        updated_at=moment,
        origin=origin,
    )


def test_completed_outcome_of_a_stored_entry_echoes_its_origin() -> None:
    """completed_outcome fills source, correlation id and reply topic from the entry's origin."""
    origin = RequestOrigin(
        topic="requests",
        partition=3,
        offset=1234,
        timestamp_ms=1_735_689_600_000,
        correlation_id="corr-1",
        reply_topic="team-replies",
    )

    outcome = completed_outcome(_tracked_entry(origin), _run("success"))

    assert outcome.status is Status.COMPLETED
    assert outcome.error is None
    assert outcome.source == source_at("requests", 3, 1234, 1_735_689_600_000)
    assert (outcome.idempotency_key, outcome.correlation_id, outcome.dag_id) == (
        "k-1",
        "corr-1",
        "etl_daily",
    )
    assert (outcome.reply_topic, outcome.run_state, outcome.attempts) == (
        "team-replies",
        "success",
        0,
    )


def test_completed_outcome_of_an_entry_without_origin_uses_unknown_source_and_the_key() -> None:
    """Without an origin the reply has Kafka's unknown coordinates, the key as correlation id."""
    outcome = completed_outcome(_tracked_entry(None), _run("failed"))

    assert outcome.source == UNKNOWN_SOURCE
    assert (outcome.correlation_id, outcome.reply_topic) == ("k-1", None)
    assert outcome.error_code is ErrorCode.RUN_FAILED
    assert outcome.run_state == "failed"


def test_many_tracked_runs_are_learnt_in_one_list_call_per_poll(
    airflow: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """Twenty runs tracked at once: one Airflow call per poll, not one per run, and all complete."""
    client = client_for(airflow)
    keys = [trigger_tracked(store, client, "devstack_plain")[0] for _ in range(20)]
    published = Collected()
    tracker = CompletionTracker(
        store,
        client,
        published,
        stop=threading.Event(),
        interval=FAST_INTERVAL,
        max_delay=FAST_INTERVAL,  # every run is due at every poll
    )
    polls = 0

    def all_completed() -> bool:
        nonlocal polls
        polls += 1
        tracker.poll_once()
        return len(published.outcomes) == len(keys)

    wait_until(all_completed, timeout=RUN_TIMEOUT, interval=POLL_EVERY, what="20 completed")

    assert set(published.by_key()) == set(keys)
    assert tracker.counts.checks <= polls  # a run-by-run tracker would make 20 per poll
    assert store.tracked_runs() == []
