"""Build a ready-to-run Worker from Settings: the one place where the parts are wired."""

from __future__ import annotations

import threading

import structlog

from consumer.airflow import AirflowClient, CallPurpose, make_airflow_client
from consumer.airflow.clearing import RunClearing
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import AdaptiveLimit, ConcurrencyLimit, FixedLimit
from consumer.answering import Answerer
from consumer.errors import AirflowUnavailableError, KafkaUnreachableError
from consumer.flow.backlog import flow_limits
from consumer.flow.parking import Flow
from consumer.flow.queued import QueuedRuns
from consumer.flow.releaser import Releaser
from consumer.flow.waiting import Waiting
from consumer.kafka_io.lag import LagMeter
from consumer.kafka_io.preflight import check_connection
from consumer.kafka_io.security import connection_options
from consumer.kafka_io.sink import RecordSink
from consumer.kafka_io.source import RequestSource
from consumer.limits import Limits
from consumer.metrics import Metrics
from consumer.pipeline.pipeline import Pipeline
from consumer.pipeline.policy import Policy
from consumer.readiness import Readiness
from consumer.routes.derive import Router
from consumer.settings import Settings
from consumer.store import open_store
from consumer.store.holds import StoreHold
from consumer.store.retention import RetentionPurger
from consumer.tracking import CompletionTracker
from consumer.worker import PartitionsCallback, Worker

log = structlog.get_logger(__name__)


def build_worker(
    settings: Settings, worker_name: str, readiness: Readiness, metrics: Metrics
) -> Worker:
    """Connect every part the worker needs.

    Raises:
        ConfigError: a setting is unusable (store URL, Airflow credentials, TLS), or the
            brokers refused the Kafka credentials or certificate (``KafkaSecurityError``).
    """
    # spec §3: refused Kafka credentials stop the worker before it reads or writes anything
    try:
        check_connection(settings)
    except KafkaUnreachableError as exc:
        # a broker outage is not a configuration error: the clients below wait as before
        log.warning("kafka_unreachable", error=str(exc))
    stop = threading.Event()
    count_calls = metrics.bind_airflow_calls
    airflow = make_airflow_client(
        settings, stop=stop, purpose=CallPurpose.TRIGGER, count_calls=count_calls
    )
    _check_airflow_release(airflow)
    airflow_limit: ConcurrencyLimit = (
        AdaptiveLimit(settings.airflow_max_concurrency, on_change=metrics.set_concurrency_limit)
        if settings.airflow_concurrency == "adaptive"
        else FixedLimit(settings.airflow_max_concurrency)
    )
    metrics.set_concurrency_limit(airflow_limit.limit)
    secret = settings.store_password
    password = None if secret is None else secret.get_secret_value()
    store = open_store(settings.store_url, settings.dedup_retention, password=password)
    # spec §3: keys past DEDUP_RETENTION are deleted, so the store's size stays bounded
    RetentionPurger(store, stop, metrics=metrics).start()
    waiting, wake = Waiting(settings.max_deferred), threading.Event()
    limits_of_flow = flow_limits(settings)
    pipeline = Pipeline(
        limits=Limits(
            max_message_bytes=settings.max_message_bytes,
            max_conf_bytes=settings.max_conf_bytes,
            max_conf_depth=settings.max_conf_depth,
            max_not_before=settings.max_not_before,
        ),
        policy=Policy(
            dag_patterns=settings.dag_allowlist,
            reply_topics=frozenset(settings.reply_topic_allowlist),
            rerun_patterns=settings.rerun_dag_allowlist,
        ),
        store=store,
        airflow=airflow,
        gate=AirflowGate(stop, probe=airflow.probe_trigger),
        airflow_limit=airflow_limit,
        clearing=RunClearing(airflow),
        crash_at=settings.test_crash_at,
        store_hold=StoreHold(stop, observe=metrics.observe_store_call),
        router=_router(settings, metrics),
        trace_context=settings.trace_context,
        flow=Flow(limits_of_flow, waiting, wake.set),
    )
    connection = connection_options(settings)

    def source_factory(
        on_assigned: PartitionsCallback, on_revoked: PartitionsCallback
    ) -> RequestSource:
        return RequestSource(
            connection,
            topic=settings.request_topic,
            group_id=settings.kafka_group_id,
            client_id=worker_name,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
            extra_topics=settings.routes.topics(),
        )

    answerer = Answerer(
        RecordSink(connection, client_id=worker_name),
        reply_topic=settings.reply_topic,
        dlq_topic=settings.dlq_topic,
        worker=worker_name,
        metrics=metrics,
        stop=stop,
        crash_at=settings.test_crash_at,
        trace_context=settings.trace_context,
    )
    # a client of its own: tracking's calls are counted apart from the triggers' (issue 16)
    tracking_airflow = make_airflow_client(
        settings, stop=stop, purpose=CallPurpose.TRACKING, count_calls=count_calls
    )
    tracker = CompletionTracker(
        store,
        tracking_airflow,
        answerer.publish_completed,
        stop=stop,
        interval=settings.track_poll_interval.total_seconds(),
        horizon=settings.track_horizon,
        concurrency=settings.track_concurrency,
    )
    releaser = Releaser(
        store,
        execute=lambda admitted, owned: pipeline.execute(admitted, owned, released=True),
        answerer=answerer,
        queued=QueuedRuns(
            make_airflow_client(
                settings, stop=stop, purpose=CallPurpose.FLOW, count_calls=count_calls
            ).transport
        ),
        limits=limits_of_flow,
        waiting=waiting,
        owner=worker_name,
        stop=stop,
        wake=wake,
        on_counts=metrics.set_deferred,
    )
    return Worker(
        source_factory=source_factory,
        lag_meter=LagMeter(connection, client_id=f"{worker_name}-lag", on_lag=metrics.set_lag),
        pipeline=pipeline,
        answerer=answerer,
        tracker=tracker,
        releaser=releaser,
        max_in_flight=settings.max_in_flight,
        shutdown_timeout=settings.shutdown_timeout.total_seconds(),
        stop=stop,
        readiness=readiness,
        metrics=metrics,
    )


def _check_airflow_release(airflow: AirflowClient) -> None:
    """Detect the API now, so that an Airflow older than supported stops the start.

    Raises:
        ConfigError: the Airflow is older than supported (``airflow.support``), or is none.
    """
    try:
        airflow.api_version  # noqa: B018 -- detects, and detection refuses an old release
    except AirflowUnavailableError as exc:
        # an outage is no configuration error: the first call detects, and checks, again
        log.warning("airflow_unreachable_at_start", error=str(exc))


def _router(settings: Settings, metrics: Metrics) -> Router | None:
    """The routes of the config file (spec §8), or None when there are none."""
    if not settings.routes:
        return None
    return Router(
        settings.routes,
        settings.route_topics,
        on_unmatched=metrics.count_unrouted,
        trace_context=settings.trace_context,
    )
