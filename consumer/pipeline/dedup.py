"""Deduplicate by idempotency key: claim the key in the store, or answer from it (spec §3)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from consumer.contract import TriggerRequest
from consumer.errors import ErrorCode, Rejected
from consumer.fingerprint import fingerprint
from consumer.run_id import run_id_for
from consumer.store import EntryStatus, IdempotencyStore, StoredEntry


@dataclass(frozen=True)
class Claim:
    """What the store says about a request's key before Airflow is called.

    Attributes:
        dag_run_id: the run id derived from the key.
        fingerprint: the request's fingerprint.
        known: the final entry when the key already maps to a run (answer ``duplicate``
            without calling Airflow); None otherwise.
        resumed: True when a ``pending`` mark of this same request was found: an earlier
            attempt may have created the run, so a 409 means this request made it.
    """

    dag_run_id: str
    fingerprint: str
    known: StoredEntry | None
    resumed: bool


@dataclass(frozen=True)
class StoredRun:
    """A run as the store remembers it (fits ``outcome.RunView``)."""

    dag_run_id: str
    state: str
    logical_date: datetime | None
    run_url: str


def claim(request: TriggerRequest, store: IdempotencyStore) -> Claim:
    """Claim ``request.idempotency_key``, writing the ``pending`` mark before any POST.

    Raises:
        Rejected: ``idempotency_key_reused`` when the key was claimed by a different request.
    """
    key = request.idempotency_key
    own = fingerprint(request)
    run_id = run_id_for(key)
    entry = store.get(key)
    resumed = entry is not None and entry.status is EntryStatus.PENDING
    if entry is None:
        entry = store.mark_pending(key, fingerprint=own, dag_id=request.dag_id, dag_run_id=run_id)
    _check_same_request(entry, own)
    known = entry if entry.status is not EntryStatus.PENDING else None
    return Claim(dag_run_id=run_id, fingerprint=own, known=known, resumed=resumed)


def final_entries(keys: Collection[str], store: IdempotencyStore) -> dict[str, StoredEntry]:
    """The entries of ``keys`` that already map to a run, read in one go without writing.

    A key left out is unknown or still ``pending``: ``claim`` decides what it needs.
    """
    return {
        key: entry
        for key, entry in store.get_many(keys).items()
        if entry.status is not EntryStatus.PENDING
    }


def check_known(request: TriggerRequest, entry: StoredEntry) -> None:
    """Check that the final ``entry`` of the request's key was made by this same request.

    Raises:
        Rejected: ``idempotency_key_reused`` when a different request claimed the key.
    """
    _check_same_request(entry, fingerprint(request))


def _check_same_request(entry: StoredEntry, own: str) -> None:
    if entry.fingerprint != own:
        raise Rejected(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this idempotency key was already used for a different request",
            {"dag_run_id": entry.dag_run_id, "dag_id": entry.dag_id},
        )


def stored_run(entry: StoredEntry) -> StoredRun:
    """The run a final store entry names, for a ``duplicate`` reply without an Airflow call."""
    return StoredRun(
        dag_run_id=entry.dag_run_id,
        state=entry.run_state or "unknown",
        logical_date=datetime.fromisoformat(entry.logical_date) if entry.logical_date else None,
        run_url=entry.run_url or "",
    )
