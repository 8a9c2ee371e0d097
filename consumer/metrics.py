"""Metrics: every Prometheus metric of the worker, defined once (spec §6, STYLE §13).

The metrics live in their own ``CollectorRegistry``, not the process-global default, so
that tests (and one process) can build several workers without name clashes. The worker
calls the small ``Metrics`` methods below; ``/metrics`` serves ``Metrics.render()``.

Names follow ``trigger_consumer_<thing>_total`` for counters and ``_seconds`` for
durations (STYLE §8); ``METRIC_NAMES`` lists them as they appear in the exposition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from consumer.kafka_io.offsets import Partition
from consumer.store.deferred import DeferredCount

# The classic text format that ``generate_latest`` writes (Prometheus text 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# ``code`` label of a request that ended without an error code (triggered, duplicate, ...).
NO_CODE = "none"

# Airflow calls: a healthy API answers in tens of milliseconds; a read timeout is 30 s.
AIRFLOW_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# one idempotency-store call: sub-millisecond on SQLite, a round trip on PostgreSQL
STORE_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# Message timestamp to reply acked: includes queueing behind backpressure and retries.
END_TO_END_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)

METRIC_NAMES = (
    "trigger_consumer_requests_total",
    "trigger_consumer_airflow_call_seconds",
    "trigger_consumer_end_to_end_seconds",
    "trigger_consumer_airflow_retries_total",
    "trigger_consumer_dedup_hits_total",
    "trigger_consumer_in_flight",
    "trigger_consumer_paused",
    "trigger_consumer_lag",
    "trigger_consumer_concurrency_limit",
    "trigger_consumer_partitions_stalled",
    "trigger_consumer_commit_failures_total",
    "trigger_consumer_held",
    "trigger_consumer_deferred",
    "trigger_consumer_deferred_oldest_seconds",
    "trigger_consumer_reply_topic_refused_total",
    "trigger_consumer_unrouted_events_total",
    "trigger_consumer_store_purged_total",
    "trigger_consumer_airflow_calls_total",
    "trigger_consumer_store_call_seconds",
)


class Metrics:
    """The worker's Prometheus metrics in a registry of their own.

    All methods are thread-safe: the worker's loop thread and its processing threads
    call them concurrently.

    Attributes:
        registry: the registry holding every metric below (render it, or collect it).
    """

    def __init__(self) -> None:
        """Create the registry and register every metric in it."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "trigger_consumer_requests_total",
            "Requests answered, by reply status and error code ('none' without an error).",
            ["status", "code"],
            registry=self.registry,
        )
        self._airflow_call = Histogram(
            "trigger_consumer_airflow_call_seconds",
            "Duration of one HTTP call to the Airflow REST API, by outcome.",
            ["outcome"],
            buckets=AIRFLOW_CALL_BUCKETS,
            registry=self.registry,
        )
        self._store_call = Histogram(
            "trigger_consumer_store_call_seconds",
            "Duration of one idempotency-store call that succeeded, by operation.",
            ["operation"],
            buckets=STORE_CALL_BUCKETS,
            registry=self.registry,
        )
        self._end_to_end = Histogram(
            "trigger_consumer_end_to_end_seconds",
            "From the request's Kafka timestamp to its reply acknowledged by the broker.",
            buckets=END_TO_END_BUCKETS,
            registry=self.registry,
        )
        self._retries = Counter(
            "trigger_consumer_airflow_retries_total",
            "Airflow calls repeated after a retryable failure.",
            registry=self.registry,
        )
        self._dedup_hits = Counter(
            "trigger_consumer_dedup_hits_total",
            "Requests answered from the idempotency store without calling Airflow.",
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "trigger_consumer_in_flight",
            "Requests fetched whose reply is not yet acknowledged.",
            registry=self.registry,
        )
        self._paused = Gauge(
            "trigger_consumer_paused",
            "1 while fetching is paused for backpressure, else 0.",
            registry=self.registry,
        )
        self._lag = Gauge(
            "trigger_consumer_lag",
            "Messages between the consumer's position and the end of each owned partition.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self._concurrency_limit = Gauge(
            "trigger_consumer_concurrency_limit",
            "How many Airflow calls may run at once (the adaptive limit).",
            registry=self.registry,
        )
        self._stalled = Gauge(
            "trigger_consumer_partitions_stalled",
            "Partitions stopped at a record batch that cannot be read (see /readyz).",
            registry=self.registry,
        )
        self._commit_failures = Counter(
            "trigger_consumer_commit_failures_total",
            "Offset commits the broker refused or did not answer in time (retried).",
            registry=self.registry,
        )
        self._held = Gauge(
            "trigger_consumer_held",
            "1 while requests are held because the named dependency fails (airflow, store).",
            ["reason"],
            registry=self.registry,
        )
        self._deferred = Gauge(
            "trigger_consumer_deferred",
            "Requests deferred in the store, by DAG and reason (limit, not_before).",
            ["dag", "reason"],
            registry=self.registry,
        )
        self._deferred_oldest = Gauge(
            "trigger_consumer_deferred_oldest_seconds",
            "Age of the oldest deferred request (0 when none waits).",
            registry=self.registry,
        )
        self._reply_topic_refused = Counter(
            "trigger_consumer_reply_topic_refused_total",
            "Replies sent to the default reply topic because the broker refused the request's.",
            registry=self.registry,
        )
        self._unrouted = Counter(
            "trigger_consumer_unrouted_events_total",
            "Records on route topics that derived nothing, by topic and what was done "
            "(dead_lettered or ignored: no route matched; tombstone: a null value, skipped).",
            ["topic", "action"],
            registry=self.registry,
        )
        self._purged = Counter(
            "trigger_consumer_store_purged_total",
            "Idempotency keys deleted from the store after DEDUP_RETENTION.",
            registry=self.registry,
        )
        self._airflow_calls = Counter(
            "trigger_consumer_airflow_calls_total",
            "HTTP requests sent to Airflow (each retry too), by purpose: trigger, tracking, "
            "detect (API version), login (JWT).",
            ["purpose"],
            registry=self.registry,
        )
        self._lag_lock = threading.Lock()
        self._lag_labels: set[tuple[str, str]] = set()
        # per (status, code): a label look-up per answered request costs more than the count
        self._request_counts: dict[tuple[str, str], Counter] = {}

    def observe_outcome(self, status: str, code: str | None, e2e_seconds: float | None) -> None:
        """Count one answered request and record its end-to-end latency.

        Args:
            status: the reply's status (``triggered``, ``duplicate``, ``rejected``, ...).
            code: the reply's error code, or None when it has none.
            e2e_seconds: seconds from the message timestamp to the reply's ack, or None
                when the message has no usable timestamp. Clock skew between producer and
                worker can make it negative; it is then recorded as 0.
        """
        labels = (status, code or NO_CODE)
        counter = self._request_counts.get(labels)
        if counter is None:
            counter = self._request_counts.setdefault(labels, self._requests.labels(*labels))
        counter.inc()
        if e2e_seconds is not None:
            self._end_to_end.observe(max(0.0, e2e_seconds))

    def observe_store_call(self, operation: str, seconds: float) -> None:
        """Record the duration of one idempotency-store call that succeeded.

        Args:
            operation: what the call did (``read_batch``, ``read``, ``mark_pending``,
                ``record``, ``release``).
            seconds: how long it took.
        """
        self._store_call.labels(operation=operation).observe(max(seconds, 0.0))

    def observe_airflow_call(self, outcome: str, seconds: float) -> None:
        """Record the duration of one call to the Airflow API.

        Args:
            outcome: a short, bounded label such as ``ok``, ``conflict``, ``unavailable``.
            seconds: how long the call took.
        """
        self._airflow_call.labels(outcome=outcome).observe(max(0.0, seconds))

    def bind_airflow_calls(self, purpose: str) -> Callable[[], None]:
        """Bind the counter of HTTP requests to Airflow for one purpose (``CallPurpose``).

        The Airflow transport binds its hooks once; each request then calls one, with no
        label lookup on the way.

        Args:
            purpose: ``trigger``, ``tracking``, ``detect`` or ``login``.

        Returns:
            A hook that counts one request each time it is called.
        """
        return self._airflow_calls.labels(purpose=purpose).inc

    def count_retry(self, n: int = 1) -> None:
        """Count Airflow calls repeated after a retryable failure.

        Args:
            n: how many retries to add (e.g. ``attempts - 1`` of a finished request).
        """
        if n > 0:
            self._retries.inc(n)

    def count_dedup_hit(self) -> None:
        """Count one request answered from the idempotency store without calling Airflow."""
        self._dedup_hits.inc()

    def set_in_flight(self, n: int) -> None:
        """Set how many requests are fetched and not yet acknowledged.

        Args:
            n: the current number of requests in flight.
        """
        self._in_flight.set(n)

    def set_paused(self, paused: bool) -> None:
        """Set whether fetching is paused for backpressure.

        Args:
            paused: True while the source is paused.
        """
        self._paused.set(1 if paused else 0)

    def set_stalled(self, n: int) -> None:
        """Set how many partitions are stopped at an unreadable batch."""
        self._stalled.set(n)

    def count_commit_failure(self) -> None:
        """Count one offset commit that failed and will be retried."""
        self._commit_failures.inc()

    def set_lag(self, lag: Mapping[Partition, int]) -> None:
        """Replace the per-partition lag; partitions no longer owned are dropped.

        Args:
            lag: messages behind the end of each owned partition.
        """
        labels = {(p.topic, str(p.partition)): n for p, n in lag.items()}
        with self._lag_lock:
            for gone in self._lag_labels - labels.keys():
                self._lag.remove(*gone)
            for (topic, partition), n in labels.items():
                self._lag.labels(topic=topic, partition=partition).set(n)
            self._lag_labels = set(labels)

    def set_concurrency_limit(self, n: int) -> None:
        """Set how many Airflow calls may run at once (the adaptive or fixed limit).

        Args:
            n: the current limit.
        """
        self._concurrency_limit.set(n)

    def set_held(self, reason: str, held: bool) -> None:
        """Set whether requests are held because ``reason`` (``airflow``, ``store``) fails.

        Args:
            reason: the failing dependency.
            held: True while requests wait for it.
        """
        self._held.labels(reason=reason).set(1 if held else 0)

    def set_deferred(self, counts: Sequence[DeferredCount], now: datetime) -> None:
        """Show what waits deferred (a fresh read of the store) and the oldest's age.

        Args:
            counts: per DAG and reason, how many wait and since when.
            now: the store's clock, which timed their deferral.
        """
        self._deferred.clear()  # a DAG with nothing left waiting leaves the series
        for count in counts:
            self._deferred.labels(dag=count.dag_id, reason=count.reason).set(count.count)
        oldest = min((count.oldest_created_at for count in counts), default=now)
        self._deferred_oldest.set(max((now - oldest).total_seconds(), 0.0))

    def count_reply_topic_refused(self) -> None:
        """Count one reply redirected to the default reply topic (the broker refused its own)."""
        self._reply_topic_refused.inc()

    def count_unrouted(self, topic: str, action: str) -> None:
        """Count a route-topic record that derived nothing (dead_lettered, ignored, tombstone)."""
        self._unrouted.labels(topic=topic, action=action).inc()

    def count_purged(self, n: int) -> None:
        """Count idempotency keys purged after the retention window.

        Args:
            n: how many were deleted.
        """
        if n > 0:
            self._purged.inc(n)

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
