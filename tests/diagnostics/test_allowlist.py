"""The allow-list verdicts: pure functions over the DAGs Airflow lists."""

from __future__ import annotations

from consumer.diagnostics.allowlist import DagInfo, check_allowlist, check_paused
from consumer.diagnostics.result import CheckResult

DAGS = [
    DagInfo("etl_daily", is_paused=False),
    DagInfo("etl_hourly", is_paused=True),
    DagInfo("report", is_paused=False),
]


def test_each_pattern_that_matches_passes_with_its_dags() -> None:
    """A pattern matching DAGs passes and names them."""
    [result] = check_allowlist(("etl_*",), DAGS)
    assert result == CheckResult(
        "DAG allow-list 'etl_*'", True, "matches 2 DAG(s): etl_daily, etl_hourly"
    )


def test_a_pattern_matching_no_dag_fails_naming_the_setting() -> None:
    """Patterns are anchored and case-sensitive; one matching nothing fails, naming the setting."""
    results = check_allowlist(("report", "ETL_*"), DAGS)
    assert [result.ok for result in results] == [True, False]
    assert results[1].name == "DAG allow-list 'ETL_*'"
    assert results[1].detail == "matches none of the 3 DAG(s) Airflow lists"
    assert results[1].remedy is not None
    assert "TRIGGER_CONSUMER_DAG_ALLOWLIST" in results[1].remedy


def test_an_empty_allowlist_fails() -> None:
    """An empty allow-list would reject every request, so it fails and suggests '*'."""
    [result] = check_allowlist((), DAGS)
    assert not result.ok
    assert result.remedy is not None
    assert "'*'" in result.remedy


def test_a_long_match_list_is_shortened() -> None:
    """More than five matching DAGs are listed as the first five and a count."""
    dags = [DagInfo(f"dag_{number}", is_paused=False) for number in range(8)]
    [result] = check_allowlist(("dag_*",), dags)
    assert result.detail == "matches 8 DAG(s): dag_0, dag_1, dag_2, dag_3, dag_4, … (+3)"


def test_paused_allowed_dags_are_a_warning_not_a_failure() -> None:
    """A paused allowed DAG makes a passing result marked as a warning, naming the DAG."""
    result = check_paused(("etl_*",), DAGS)
    assert (result.ok, result.warning) == (True, True)
    assert result.detail == "1 of 2 allowed DAG(s) paused: etl_hourly"


def test_no_paused_allowed_dag_is_a_plain_pass() -> None:
    """Paused DAGs outside the allow-list do not warn."""
    result = check_paused(("report",), DAGS)
    assert (result.ok, result.warning) == (True, False)
