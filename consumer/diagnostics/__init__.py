"""Diagnostics: doctor's checks of Kafka, Airflow, the DAG allow-list and the store (spec §6).

Each check is a small function returning a ``CheckResult``; ``diagnose`` runs them in order::

    kafka_checks    kafka, request/reply/DLQ topic, consumer group
    airflow_checks  airflow, airflow credentials, DAG allow-list (per pattern), paused DAGs
    store_check     store
    deferral_check  deferred (what waits in the store; a warning near MAX_DEFERRED)

A check whose prerequisite failed (topics need Kafka, the allow-list needs Airflow) is
reported as not checked instead of piling up timeouts. Nothing here prints, and no result
ever carries a secret: ``diagnose`` masks every configured secret in every text it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from consumer.diagnostics.airflow_checks import airflow_checks
from consumer.diagnostics.deferral_check import NAME as DEFERRED
from consumer.diagnostics.deferral_check import check_deferred
from consumer.diagnostics.kafka_checks import kafka_checks
from consumer.diagnostics.result import CheckResult, not_checked
from consumer.diagnostics.store_check import check_store
from consumer.settings import SECRET_FIELDS, Settings

__all__ = ["DEFAULT_TIMEOUT", "CheckResult", "diagnose"]

DEFAULT_TIMEOUT = 5.0
MASK = "***"


def diagnose(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> list[CheckResult]:
    """Run every check, in order: Kafka, topics, group, Airflow, allow-list, store, deferred.

    Args:
        settings: the settings to check.
        timeout: seconds each network call may take.

    Returns:
        One result per check, with every configured secret masked.
    """
    results = [
        *kafka_checks(settings, timeout),
        *airflow_checks(settings, timeout),
        store := check_store(settings),
        check_deferred(settings) if store.ok else not_checked([DEFERRED], "store")[0],
    ]
    return [_masked(result, _secrets(settings)) for result in results]


def _secrets(settings: Settings) -> list[str]:
    values = (getattr(settings, name) for name in SECRET_FIELDS)
    return [value.get_secret_value() for value in values if value is not None]


def _masked(result: CheckResult, secrets: Sequence[str]) -> CheckResult:
    """The result with every secret replaced by ``***`` (defence in depth, spec §5)."""
    detail, remedy = result.detail, result.remedy
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, MASK)
            remedy = remedy.replace(secret, MASK) if remedy is not None else None
    return replace(result, detail=detail, remedy=remedy)
