"""deploy/prometheus/alerts.yaml: promtool checks and unit-tests it; it names real metrics."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from devstack.prometheus import promtool
from tests.deploy.monitoring import ALERT_TESTS, ALERTS, alert_rules, exported, metric_names

# Each alert the issue asks for (README, "Dashboard and alerts").
EXPECTED_ALERTS = {
    "TriggerConsumerHeld",
    "TriggerConsumerLagGrowing",
    "TriggerConsumerPartitionStalled",
    "TriggerConsumerDeadLetters",
    "TriggerConsumerAirflowUnavailableAnswered",
    "TriggerConsumerInternalError",
    "TriggerConsumerNoReplicaReady",
    "TriggerConsumerCommitsFailing",
    "TriggerConsumerConcurrencyAtMinimum",
}
RUNBOOK_ANNOTATIONS = {"summary", "description", "runbook", "readme"}


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (Debian's, installed on first use) in the rules' directory."""
    return subprocess.run(
        [str(promtool()), *args],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_check_rules_accepts_the_rules() -> None:
    """`promtool check rules` finds every rule valid."""
    done = run_promtool("check", "rules", ALERTS.name)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules alerts_test.yaml` passes every case."""
    done = run_promtool("test", "rules", ALERT_TESTS.name)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_are_the_issues_alerts() -> None:
    """alerts.yaml holds exactly the alerts asked for, each once."""
    names = [rule["alert"] for rule in alert_rules()]

    assert sorted(names) == sorted(EXPECTED_ALERTS)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_has_runbook_text_and_names_only_exported_metrics(rule: dict[str, Any]) -> None:
    """Summary, meaning, checks and README section are there; every metric is the worker's."""
    names = metric_names(rule["expr"])

    assert set(rule["annotations"]) >= RUNBOOK_ANNOTATIONS
    assert rule["annotations"]["readme"].startswith("README.md, ")
    assert {name for name in names if not exported(name)} == set()
    assert names or "up{" in rule["expr"]


def test_each_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """alerts_test.yaml checks each alert once firing and once not firing."""
    checks = [
        check
        for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for check in case["alert_rule_test"]
    ]
    fires = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}

    assert fires == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS
