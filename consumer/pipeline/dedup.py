"""Deduplicate by idempotency key: what the store's entry says about a request (spec §3).

A pure judgement over one store entry and the request's fingerprint; the pipeline reads
the entries (one query per poll) and writes the marks::

    no entry ──────────────────────────► NEW      write the pending mark, then POST
    pending of this very request ──────► RESUMED  an earlier attempt may have made the run
    pending of another request ────────► CLAIMED  POST; only a created run is ours
    final, of this very request ───────► OWN      answer its stored status again
    final, of another request ─────────► KNOWN    answer ``duplicate`` from the store
    any, other fingerprint ────────────► REUSED   ``idempotency_key_reused``, no Airflow call

"This very request" is the record at the same (topic, partition, offset): re-delivered
after a crash, a drain timeout or a rebalance, on this replica or another one.

Whether the request made the run is decided here, once, from that judgement and what the
trigger reported (``made_the_run``). Every run the worker makes names its request in its
conf (``consumer.provenance``), so a run found (409) says who made it::

    created (its POST answered with the run) ─────────────────────► made it: triggered
    found, naming this very request (any owner's POST of it) ──────► made it: triggered
    found, naming another request ─────────────────────────────────► another did: duplicate
    found, naming none (made otherwise, or by an older release):
        RESUMED (its own earlier attempt may have POSTed) ─────────► made it: triggered
        after a POST of its own that got no answer ────────────────► made it: triggered
        otherwise (NEW or CLAIMED) ────────────────────────────────► another did: duplicate

and whether a definite refusal (no run) releases the key (``releases_key``): its own mark
(NEW, RESUMED) is released so that a corrected retry may reuse the key; another request's
(CLAIMED) is not its to drop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

from consumer.airflow import DagRun, TriggerResult
from consumer.contract import TriggerRequest
from consumer.errors import AirflowError, ErrorCode, Rejected
from consumer.outcome import Outcome
from consumer.provenance import Source
from consumer.record import InboundRecord
from consumer.store import (
    Coordinates,
    EntryStatus,
    RememberedRefusal,
    StoredEntry,
    coordinates,
)


class Seen(Enum):
    """What the store knows of a request's key, judged against the request."""

    NEW = "new"
    RESUMED = "resumed"
    CLAIMED = "claimed"
    OWN = "own"
    KNOWN = "known"
    REUSED = "reused"


ANSWERED = frozenset({Seen.OWN, Seen.KNOWN, Seen.REUSED})
"""What the store answers without an Airflow call."""


def judge(entry: StoredEntry | None, fingerprint: str, at: Coordinates | None = None) -> Seen:
    """Judge what ``entry`` means for the request whose fingerprint is ``fingerprint``.

    Args:
        entry: the key's live store entry, or None.
        fingerprint: the request's fingerprint.
        at: the request record's (topic, partition, offset); None judges as before
            origins were kept: any pending mark is RESUMED, any final entry KNOWN.

    Returns:
        One of ``Seen`` (see the module docstring).
    """
    if entry is None:
        return Seen.NEW
    if entry.fingerprint != fingerprint:
        return Seen.REUSED
    stored_at = coordinates(entry.origin)
    if entry.status is EntryStatus.PENDING:
        # a mark without origin (store schema 1) is taken for this request, as it was then
        mine = at is None or stored_at is None or stored_at == at
        return Seen.RESUMED if mine else Seen.CLAIMED
    return Seen.OWN if at is not None and stored_at == at else Seen.KNOWN


def claimed(entry: StoredEntry | None, fingerprint: str, at: Coordinates) -> Seen:
    """Judge the entry ``mark_pending`` returned: the mark this call wrote is NEW.

    Args:
        entry: the key's holder after the claim: the mark just written, or the entry of
            another process (replica) that claimed the key since it was read.
        fingerprint: the request's fingerprint.
        at: the request record's (topic, partition, offset).

    Returns:
        NEW for the mark just written; otherwise as ``judge``.
    """
    seen = judge(entry, fingerprint, at)
    # a mark of this very record that this call did not write is its old owner's, whose
    # POST may have made the run (a partition moved mid-work): resumed, not new
    mine = entry is not None and entry.claimed_here
    return Seen.NEW if seen is Seen.RESUMED and mine else seen


def made_the_run(seen: Seen, result: TriggerResult, me: Source) -> bool:
    """Whether the request judged ``seen`` made the run ``result`` reports (the table above).

    Args:
        seen: NEW, RESUMED or CLAIMED: how the request held its key when it triggered.
        result: what the trigger reported, across its retries and holds.
        me: the request: its record's (topic, partition, offset) and its fingerprint.

    Returns:
        True when the answer is ``triggered`` (and the store records it so); False for
        ``duplicate``.
    """
    if result.created:
        return True
    if result.source is not None:
        return result.source == me
    return seen is Seen.RESUMED or result.may_have_reached


def releases_key(seen: Seen) -> bool:
    """Whether a definite refusal (no run made) releases the key's pending mark.

    Args:
        seen: NEW, RESUMED or CLAIMED: how the request held its key when it triggered.

    Returns:
        True for the request's own mark; False for another request's (CLAIMED).
    """
    return seen is not Seen.CLAIMED


def remembered(key: str, at: Coordinates, exc: AirflowError) -> RememberedRefusal:
    """The refusal of the record at ``at``, kept when it releases ``key`` (``release``).

    A corrected request may take the key next; if this record is then delivered again (a
    crash before its offset was committed), it is answered this refusal again, not
    ``idempotency_key_reused`` (nemesis seed 303).

    Args:
        key: the released key.
        at: the refused record's (topic, partition, offset).
        exc: Airflow's definite refusal.

    Returns:
        The value to remember (the store sets its ``created_at``).
    """
    details = {name: value for name, value in exc.details.items() if name != "attempts"}
    message = exc.message.replace("\x00", "")  # Airflow's words; PostgreSQL text holds no NUL
    return RememberedRefusal(key, at, exc.code.value, message, details, datetime.now(UTC))


def refused_again(
    record: InboundRecord, request: TriggerRequest, refusal: RememberedRefusal
) -> Outcome:
    """The answer of a re-delivered record that its remembered refusal answered before."""
    # a code this release does not know (written by a newer replica): the nearest known one
    known = refusal.code in ErrorCode.__members__.values()
    code = ErrorCode(refusal.code) if known else ErrorCode.AIRFLOW_REJECTED
    error = AirflowError(code, refusal.message, refusal.details)
    return Outcome.failed(record, error, request=request, attempts=0)


def key_reused(entry: StoredEntry, request: TriggerRequest) -> Rejected:
    """The refusal of a request whose key ``entry`` holds for a different request.

    Args:
        entry: the entry of the first request that claimed the key.
        request: the refused request.

    Returns:
        The ``idempotency_key_reused`` signal, or ``rerun_conflict`` for a re-run (built,
        not raised: the caller answers it).
    """
    if request.rerun is not None:
        # Airflow keeps a run's conf, logical date and note when it clears it
        return Rejected(
            ErrorCode.RERUN_CONFLICT,
            "a re-run must repeat the first request of its key (dag_id, conf, logical_date "
            "and note): a cleared run keeps them; a new idempotency key makes a new run",
            {"dag_run_id": entry.dag_run_id, "dag_id": entry.dag_id},
        )
    return Rejected(
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "this idempotency key was already used for a different request",
        {"dag_run_id": entry.dag_run_id, "dag_id": entry.dag_id},
    )


def stored_outcome(
    record: InboundRecord, request: TriggerRequest, entry: StoredEntry, seen: Seen
) -> Outcome:
    """The answer the store gives for a request judged ``seen`` (one of ``ANSWERED``).

    Args:
        record: the request record.
        request: the valid request.
        entry: the key's final store entry.
        seen: how ``judge`` saw the request.

    Returns:
        ``idempotency_key_reused`` for REUSED, ``triggered`` again for this very request
        (OWN) that made the run, else ``duplicate`` of the stored run; no Airflow call.
    """
    if seen is Seen.REUSED:
        return Outcome.rejected(record, key_reused(entry, request), request=request)
    if seen is Seen.OWN and entry.status is EntryStatus.TRIGGERED:
        return Outcome.triggered(record, request, stored_run(entry), attempts=0)
    return Outcome.duplicate(record, request, stored_run(entry), attempts=0)


def stored_run(entry: StoredEntry, state: str | None = None) -> DagRun:
    """The run a final store entry names, for an answer without Airflow.

    Args:
        entry: the key's final store entry.
        state: the run's state when known better than the entry's (after a clear).

    Returns:
        The run, in ``state``, else the entry's last known state, else ``unknown``.
    """
    return DagRun(
        dag_id=entry.dag_id,
        dag_run_id=entry.dag_run_id,
        state=state or entry.run_state or "unknown",
        logical_date=datetime.fromisoformat(entry.logical_date) if entry.logical_date else None,
        run_url=entry.run_url or "",
    )
