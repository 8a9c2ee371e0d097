"""The monitoring files read as data: the dashboard's queries and the alert rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from consumer.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "trigger-consumer.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
JOB = "trigger-consumer"  # the scrape job the rules' `up` selectors name
# Prometheus's own series the files may use besides the worker's
PROMETHEUS_SERIES = frozenset({"up"})
# A range that covers a whole test run, so that rates and quantiles have samples.
RATE_INTERVAL = "5m"
_METRIC = re.compile(r"\b(trigger_consumer_[a-z0-9_]+)")
_HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")
_IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard (JSON model), parsed."""
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard, rows' nested panels included, rows themselves not."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(job: str = JOB) -> list[tuple[str, str]]:
    """Each panel target as (``panel title / refId``, PromQL with the variables filled in).

    ``$job`` becomes ``job``, ``$instance`` the "All" value and ``$__rate_interval``
    ``RATE_INTERVAL``: what Grafana would send with one job and every replica chosen.
    """
    variables = {"$__rate_interval": RATE_INTERVAL, "$instance": ".*", "$job": job}
    queries = []
    for panel in panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(name, value)
            queries.append((f"{panel['title']} / {target['refId']}", expr))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yaml."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def metric_names(expr: str) -> set[str]:
    """The worker metrics an expression names, histogram series folded into their metric."""
    return {_HISTOGRAM_SERIES.sub("", name) for name in _METRIC.findall(expr)}


def foreign_series(expr: str) -> set[str]:
    """Selectors ``name{...}`` of an expression that are neither the worker's nor Prometheus's."""
    names = set(_IDENTIFIER.findall(expr)) - PROMETHEUS_SERIES
    return {name for name in names if not _METRIC.fullmatch(name)} - {"by", "on", "without"}


def exported(name: str) -> bool:
    """Whether ``name`` is one of the metrics consumer/metrics.py registers."""
    return name in METRIC_NAMES
