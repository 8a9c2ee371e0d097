"""deploy/grafana/trigger-consumer.json: a datasource variable, both views, real metrics."""

from __future__ import annotations

import re

import pytest

from consumer.metrics import METRIC_NAMES
from tests.deploy.monitoring import (
    dashboard,
    exported,
    foreign_series,
    metric_names,
    panel_queries,
    panels,
)

# Metrics the issue wants on the dashboard, each in some panel.
SHOWN = {
    "trigger_consumer_requests_total",
    "trigger_consumer_end_to_end_seconds",
    "trigger_consumer_airflow_call_seconds",
    "trigger_consumer_concurrency_limit",
    "trigger_consumer_in_flight",
    "trigger_consumer_lag",
    "trigger_consumer_held",
    "trigger_consumer_partitions_stalled",
    "trigger_consumer_airflow_retries_total",
    "trigger_consumer_airflow_calls_total",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_the_datasource_is_a_variable_used_by_every_panel_and_target() -> None:
    """A `datasource` variable of type prometheus; no panel or query names a fixed one."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    queried = [p for p in panels() if p.get("targets")]

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert all(panel["datasource"] == DATASOURCE for panel in queried)
    assert all(t["datasource"] == DATASOURCE for p in queried for t in p["targets"])
    assert variables["job"]["datasource"] == variables["instance"]["datasource"] == DATASOURCE


def test_there_is_a_fleet_row_and_a_per_replica_row() -> None:
    """Fleet panels never filter by replica; per-replica panels filter by and show it."""
    rows = [p for p in dashboard()["panels"] if p["type"] == "row"]
    per_replica_top = next(p["gridPos"]["y"] for p in rows if "$instance" in p["title"])
    exprs = [
        (panel["gridPos"]["y"], target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
    ]

    assert [row["title"].split(":")[0] for row in rows] == ["Fleet", "Per replica"]
    assert all("$instance" not in e for y, e in exprs if y < per_replica_top)
    assert all('instance=~"$instance"' in e for y, e in exprs if y > per_replica_top)


def test_the_issues_metrics_are_all_shown() -> None:
    """Requests, both latencies, limit, in-flight, lag, holds, stalls, retries, calls."""
    named = {name for _, expr in panel_queries() for name in metric_names(expr)}

    assert named >= SHOWN


@pytest.mark.parametrize(("panel", "expr"), panel_queries(), ids=[q[0] for q in panel_queries()])
def test_each_query_names_only_exported_metrics(panel: str, expr: str) -> None:
    """Every metric a panel names is registered in consumer/metrics.py (or is `up`)."""
    assert {name for name in metric_names(expr) if not exported(name)} == set(), panel
    assert foreign_series(expr) == set(), panel
    assert "$" not in expr, f"{panel}: an unknown dashboard variable"


def test_latency_panels_use_histogram_quantiles_p50_and_p99() -> None:
    """Both histograms are shown as p50 and p99 from their buckets."""
    exprs = [expr for _, expr in panel_queries()]

    for histogram in (
        "trigger_consumer_end_to_end_seconds",
        "trigger_consumer_airflow_call_seconds",
    ):
        assert histogram in METRIC_NAMES
        quantiles = {
            float(m.group(1))
            for expr in exprs
            if (m := re.match(rf"histogram_quantile\(([0-9.]+), .*{histogram}_bucket", expr))
        }
        assert quantiles == {0.5, 0.99}
