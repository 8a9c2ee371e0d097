"""Doctor's DAG allow-list checks: every pattern matches a DAG; allowed DAGs that are paused.

Pure functions over the DAGs Airflow lists, so they are tested without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from consumer.diagnostics.result import CheckResult, list_names
from consumer.settings import env_name


@dataclass(frozen=True)
class DagInfo:
    """A DAG as Airflow lists it.

    Attributes:
        dag_id: the DAG's id.
        is_paused: whether the DAG is paused.
    """

    dag_id: str
    is_paused: bool


def check_allowlist(patterns: Sequence[str], dags: Sequence[DagInfo]) -> list[CheckResult]:
    """Each DAG allow-list pattern matches at least one DAG Airflow lists.

    Args:
        patterns: ``TRIGGER_CONSUMER_DAG_ALLOWLIST``.
        dags: the DAGs Airflow lists.

    Returns:
        One result per pattern; an empty allow-list is one failed result.
    """
    setting = env_name("dag_allowlist")
    if not patterns:
        return [
            CheckResult(
                "DAG allow-list",
                False,
                "the allow-list is empty: every request would be rejected dag_not_allowed",
                f"set {setting} to comma-separated DAG patterns ('*' allows every DAG)",
            )
        ]
    results = []
    for pattern in patterns:
        matched = [dag.dag_id for dag in dags if fnmatchcase(dag.dag_id, pattern)]
        name = f"DAG allow-list {pattern!r}"
        if matched:
            results.append(
                CheckResult(name, True, f"matches {len(matched)} DAG(s): {list_names(matched)}")
            )
        else:
            results.append(
                CheckResult(
                    name,
                    False,
                    f"matches none of the {len(dags)} DAG(s) Airflow lists",
                    f"fix the pattern in {setting} (globs are anchored and case-sensitive), "
                    "or deploy the DAG it should match",
                )
            )
    return results


def check_paused(patterns: Sequence[str], dags: Sequence[DagInfo]) -> CheckResult:
    """Allowed DAGs that are paused: their runs stay queued (a warning, never a failure).

    Args:
        patterns: ``TRIGGER_CONSUMER_DAG_ALLOWLIST``.
        dags: the DAGs Airflow lists.

    Returns:
        A passing result, marked as a warning when an allowed DAG is paused.
    """
    allowed = [dag for dag in dags if any(fnmatchcase(dag.dag_id, p) for p in patterns)]
    paused = [dag.dag_id for dag in allowed if dag.is_paused]
    if not paused:
        return CheckResult("paused DAGs", True, f"none of the {len(allowed)} allowed DAG(s)")
    return CheckResult(
        "paused DAGs",
        True,
        f"{len(paused)} of {len(allowed)} allowed DAG(s) paused: {list_names(paused)}",
        "unpause them in Airflow: their runs are created but stay queued until then",
        warning=True,
    )
