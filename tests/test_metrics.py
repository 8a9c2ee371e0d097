"""Tests of consumer/metrics.py: registered names, values after observing, own registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from consumer.kafka_io.offsets import Partition
from consumer.metrics import METRIC_NAMES, NO_CODE, Metrics


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """The metric names as Prometheus shows them (counters carry their ``_total``)."""
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in registry.collect()
    }


def test_registered_metric_names_are_exactly_the_documented_ones() -> None:
    """Every metric is registered under its ``trigger_consumer_`` name (STYLE §8)."""
    metrics = Metrics()

    assert exposed_names(metrics.registry) == set(METRIC_NAMES)
    assert set(METRIC_NAMES) == {
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
    }


def test_metric_names_follow_the_naming_grammar() -> None:
    """Counters end in ``_total`` and histograms of durations in ``_seconds`` (STYLE §8)."""
    metrics = Metrics()

    for family in metrics.registry.collect():
        assert family.name.startswith("trigger_consumer_")
        if family.type == "histogram":
            assert family.name.endswith("_seconds")


def test_two_instances_do_not_share_a_registry() -> None:
    """Building several Metrics (several workers in one test process) does not clash."""
    first, second = Metrics(), Metrics()

    first.count_dedup_hit()

    assert first.registry.get_sample_value("trigger_consumer_dedup_hits_total") == 1.0
    assert second.registry.get_sample_value("trigger_consumer_dedup_hits_total") == 0.0


def test_observe_outcome_counts_by_status_and_code_and_records_latency() -> None:
    """Outcomes are counted per (status, code); a missing code becomes ``none``."""
    metrics = Metrics()

    metrics.observe_outcome("triggered", None, 0.3)
    metrics.observe_outcome("triggered", None, 1.5)
    metrics.observe_outcome("rejected", "dag_not_allowed", None)

    sample = metrics.registry.get_sample_value
    assert sample("trigger_consumer_requests_total", {"status": "triggered", "code": NO_CODE}) == 2
    assert (
        sample("trigger_consumer_requests_total", {"status": "rejected", "code": "dag_not_allowed"})
        == 1
    )
    assert sample("trigger_consumer_end_to_end_seconds_count") == 2
    assert sample("trigger_consumer_end_to_end_seconds_sum") == pytest.approx(1.8)
    assert sample("trigger_consumer_end_to_end_seconds_bucket", {"le": "0.5"}) == 1


def test_negative_end_to_end_latency_is_recorded_as_zero() -> None:
    """Producer clock skew never produces a negative latency sample."""
    metrics = Metrics()

    metrics.observe_outcome("duplicate", None, -4.0)

    assert metrics.registry.get_sample_value("trigger_consumer_end_to_end_seconds_sum") == 0.0
    assert metrics.registry.get_sample_value("trigger_consumer_end_to_end_seconds_count") == 1


def test_airflow_calls_are_timed_by_outcome() -> None:
    """Each Airflow call lands in the histogram of its outcome."""
    metrics = Metrics()

    metrics.observe_airflow_call("ok", 0.02)
    metrics.observe_airflow_call("unavailable", 5.0)

    sample = metrics.registry.get_sample_value
    assert sample("trigger_consumer_airflow_call_seconds_count", {"outcome": "ok"}) == 1
    assert sample("trigger_consumer_airflow_call_seconds_sum", {"outcome": "unavailable"}) == 5.0


def test_bound_airflow_call_hooks_count_each_purpose_apart() -> None:
    """Each hook bound for a purpose adds one request to that purpose only."""
    metrics = Metrics()
    trigger, tracking = (metrics.bind_airflow_calls(p) for p in ("trigger", "tracking"))

    trigger()
    trigger()
    tracking()

    sample = metrics.registry.get_sample_value
    assert sample("trigger_consumer_airflow_calls_total", {"purpose": "trigger"}) == 2
    assert sample("trigger_consumer_airflow_calls_total", {"purpose": "tracking"}) == 1
    assert sample("trigger_consumer_airflow_calls_total", {"purpose": "detect"}) is None


def test_counters_and_gauges_take_the_values_the_worker_reports() -> None:
    """Retries, dedup hits, in-flight, paused and the concurrency limit read back as set."""
    metrics = Metrics()

    metrics.count_retry(2)
    metrics.count_retry()
    metrics.count_retry(0)
    metrics.count_dedup_hit()
    metrics.set_in_flight(7)
    metrics.set_paused(True)
    metrics.set_concurrency_limit(64)

    sample = metrics.registry.get_sample_value
    assert sample("trigger_consumer_airflow_retries_total") == 3
    assert sample("trigger_consumer_dedup_hits_total") == 1
    assert sample("trigger_consumer_in_flight") == 7
    assert sample("trigger_consumer_paused") == 1
    assert sample("trigger_consumer_concurrency_limit") == 64
    metrics.set_paused(False)
    assert sample("trigger_consumer_paused") == 0


def test_set_lag_replaces_the_partitions_and_drops_revoked_ones() -> None:
    """Lag is per (topic, partition); a partition missing from the next report disappears."""
    metrics = Metrics()

    metrics.set_lag({Partition("requests", 0): 5, Partition("requests", 1): 0})
    metrics.set_lag({Partition("requests", 1): 3})

    sample = metrics.registry.get_sample_value
    assert sample("trigger_consumer_lag", {"topic": "requests", "partition": "1"}) == 3
    assert sample("trigger_consumer_lag", {"topic": "requests", "partition": "0"}) is None


def test_render_is_parseable_prometheus_text_with_the_observed_values() -> None:
    """``render()`` gives text a Prometheus scraper parses, carrying names and values."""
    metrics = Metrics()
    metrics.observe_outcome("error", "airflow_unavailable", 12.0)
    metrics.set_in_flight(3)

    text = metrics.render().decode()

    assert 'trigger_consumer_requests_total{code="airflow_unavailable",status="error"} 1.0' in text
    assert "trigger_consumer_in_flight 3.0" in text
    parsed = {family.name for family in text_string_to_metric_families(text)}
    assert {"trigger_consumer_requests", "trigger_consumer_in_flight"} <= parsed


def test_store_calls_are_timed_by_operation() -> None:
    """Each store call that succeeded is one observation under its operation."""
    metrics = Metrics()
    metrics.observe_store_call("read_batch", 0.002)
    metrics.observe_store_call("record", 0.004)
    metrics.observe_store_call("record", 0.006)
    sample = metrics.registry.get_sample_value
    labels = {"operation": "record"}
    assert sample("trigger_consumer_store_call_seconds_count", labels) == 2
    assert sample("trigger_consumer_store_call_seconds_sum", labels) == pytest.approx(0.01)
