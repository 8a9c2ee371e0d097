"""Deduplicate by idempotency key: what the store's entry says about a request (spec §3).

A pure judgement over one store entry and the request's fingerprint; the pipeline reads
the entries (one query per poll) and writes the marks::

    no entry ─────────────────────► NEW      write the pending mark, then POST
    pending, same fingerprint ────► RESUMED  an earlier attempt may have made the run
    final, same fingerprint ──────► KNOWN    answer ``duplicate`` from the store
    any, other fingerprint ───────► REUSED   ``idempotency_key_reused``, no Airflow call
"""

from __future__ import annotations

from enum import Enum

from consumer.errors import ErrorCode, Rejected
from consumer.store import EntryStatus, StoredEntry


class Seen(Enum):
    """What the store knows of a request's key, judged against the request."""

    NEW = "new"
    RESUMED = "resumed"
    KNOWN = "known"
    REUSED = "reused"


def judge(entry: StoredEntry | None, fingerprint: str) -> Seen:
    """Judge what ``entry`` means for the request whose fingerprint is ``fingerprint``.

    Args:
        entry: the key's live store entry, or None.
        fingerprint: the request's fingerprint.

    Returns:
        NEW, RESUMED, KNOWN or REUSED (see the module docstring).
    """
    if entry is None:
        return Seen.NEW
    if entry.fingerprint != fingerprint:
        return Seen.REUSED
    return Seen.RESUMED if entry.status is EntryStatus.PENDING else Seen.KNOWN


def key_reused(entry: StoredEntry) -> Rejected:
    """The refusal of a request whose key ``entry`` holds for a different request.

    Args:
        entry: the entry of the first request that claimed the key.

    Returns:
        The ``idempotency_key_reused`` signal (built, not raised: the caller answers it).
    """
    return Rejected(
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "this idempotency key was already used for a different request",
        {"dag_run_id": entry.dag_run_id, "dag_id": entry.dag_id},
    )
