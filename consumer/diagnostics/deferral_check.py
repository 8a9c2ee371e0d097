"""Doctor's deferral check: what waits deferred in the store, and how near ``MAX_DEFERRED`` is.

It warns (a pass worth a look) from ``NEAR_FULL`` of ``MAX_DEFERRED`` on: past the bound the
worker stops fetching. Whether a replica holds the flow lease is not shown: the store can
only take the lease, not read who holds it, and doctor must not take it.
"""

from __future__ import annotations

import sqlite3

import psycopg

from consumer.diagnostics.result import NAMES_SHOWN, CheckResult
from consumer.errors import ConfigError, StoreUnavailableError, describe_error
from consumer.flow.backlog import NEAR_FULL, Backlog, format_age
from consumer.settings import Settings, env_name
from consumer.store import open_store
from consumer.store.redaction import display_url, mask_url_secrets

NAME = "deferred"


def check_deferred(settings: Settings) -> CheckResult:
    """How many requests wait deferred, the DAGs with the most, and the oldest one's age.

    Args:
        settings: the settings to check (the store check passed: the store opens).

    Returns:
        A pass; a warning from ``NEAR_FULL`` of ``MAX_DEFERRED`` on; a failure when the
        store cannot be read.
    """
    url = settings.store_url
    secret = settings.store_password
    password = None if secret is None else secret.get_secret_value()
    try:
        store = open_store(url, settings.dedup_retention, password=password)
        try:
            backlog = Backlog.read(
                store.deferred_counts(), store.store_now(), settings.max_deferred
            )
        finally:
            store.close()
    except (sqlite3.Error, psycopg.Error, OSError, ConfigError, StoreUnavailableError) as exc:
        said = mask_url_secrets(describe_error(exc), url)
        remedy = f"check {env_name('store_url')}"
        return CheckResult(NAME, False, f"{display_url(url)}: {said}", remedy)
    return judge(backlog)


def judge(backlog: Backlog) -> CheckResult:
    """The verdict on a backlog: its total, its top DAGs, its oldest age, how full it is.

    Args:
        backlog: what waits in the store.

    Returns:
        Like ``12 waiting of MAX_DEFERRED 100000, oldest 3m04s: etl 10, reports 2``.
    """
    bound = f"MAX_DEFERRED {backlog.max_deferred}"
    if backlog.oldest_age is None:
        return CheckResult(NAME, True, f"none waiting ({bound})")
    dags = backlog.by_dag()
    top = ", ".join(f"{dag} {count}" for dag, count in dags[:NAMES_SHOWN])
    if len(dags) > NAMES_SHOWN:
        top += f", … (+{len(dags) - NAMES_SHOWN} DAGs)"
    detail = f"{backlog.total} waiting of {bound}, oldest {format_age(backlog.oldest_age)}: {top}"
    if not backlog.near_full():
        return CheckResult(NAME, True, detail)
    state = (
        "reached: the worker has stopped fetching"
        if backlog.full()
        else f"near (≥ {NEAR_FULL:.0%}): back-pressure follows"
    )
    remedy = (
        f"{bound} {state}; raise the DAGs' limits, let a DAG through with "
        f"`trigger-consumer deferred --release DAG`, or raise {env_name('max_deferred')}"
    )
    return CheckResult(NAME, True, detail, remedy, warning=True)
