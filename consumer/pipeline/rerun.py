"""Re-run a key's run on purpose (issue 29): clear it once per ``rerun.id``.

A request with ``rerun`` whose key has no run yet is triggered as usual (and its re-run
id noted done); one whose key has a run clears that run through Airflow, guarded by the
re-run's mark in the store, judged like a key's entry (``dedup``)::

    no mark ──────────────────────────► NEW      read the run's clock, mark pending, clear
    pending, with the run's clock ────► RESUMED  clear unless the clock moved since
    pending, no clock, this request ──► RESUMED  (its trigger found the run) read, clear
    pending, no clock, another one ───► CLAIMED  ``duplicate``: its trigger makes the run
    done, of this very request ───────► OWN      ``rerun`` again (``triggered`` without a
                                                 clock), no Airflow call
    done, of another request ─────────► KNOWN    ``duplicate``: the run was re-run already

A pending mark with a clock is resumed by whichever request of that key and id comes:
its own re-delivery after a crash, or a re-send after a refusal or a lost answer (the
clock tells whether the clear happened). Two replicas resuming one mark at the same
instant could both find the clock unmoved; requests of one key are ordered per worker.

Airflow keeps a run's conf, logical date and note when it clears it, so a re-run whose
fingerprinted fields differ from the key's first request is ``rerun_conflict``
(``dedup.key_reused``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from consumer.airflow.clearing import Clocked, RunClock
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import CallOutcome, ConcurrencyLimit
from consumer.contract import Rerun, TriggerRequest
from consumer.crash import CrashPoint, crash_here
from consumer.errors import AirflowError, AirflowUnavailableError, ErrorCode, StoppingError
from consumer.outcome import Outcome
from consumer.pipeline.dedup import stored_run
from consumer.pipeline.trigger import call_held
from consumer.record import InboundRecord
from consumer.store import (
    Coordinates,
    IdempotencyStore,
    RequestOrigin,
    RerunMark,
    RerunStatus,
    StoredEntry,
)
from consumer.store.holds import StoreHold


class Clearing(Protocol):
    """Reads a run's clock and clears the run (``airflow.clearing.RunClearing`` fits)."""

    def clock(self, dag_id: str, run_id: str) -> Clocked:
        """The run's clock; ``dag_not_found`` when Airflow knows no such run."""
        ...

    def ensure_cleared(
        self,
        dag_id: str,
        run_id: str,
        before: RunClock,
        *,
        only_failed: bool,
        owned: Callable[[], bool],
    ) -> Clocked:
        """Clear the run unless its clock moved since ``before``; its clock after."""
        ...


class RerunSeen(Enum):
    """What the store knows of one re-run of a key's run, judged against the request."""

    NEW = "new"
    RESUMED = "resumed"
    CLAIMED = "claimed"
    OWN = "own"
    KNOWN = "known"


CLEARS = frozenset({RerunSeen.NEW, RerunSeen.RESUMED})
"""The judgements under which this request clears the run."""


def judge_rerun(mark: RerunMark | None, at: Coordinates) -> RerunSeen:
    """Judge what a re-run mark means for the request at ``at`` (the module's table).

    Args:
        mark: the mark of the request's key and ``rerun.id``, or None.
        at: the request record's (topic, partition, offset).

    Returns:
        One of ``RerunSeen``; a mark this very call wrote (``claimed_here``) is NEW.
    """
    if mark is None or mark.claimed_here:
        return RerunSeen.NEW
    mine = mark.at == at
    if mark.status is RerunStatus.PENDING:
        return RerunSeen.RESUMED if mine or mark.evidence is not None else RerunSeen.CLAIMED
    return RerunSeen.OWN if mine else RerunSeen.KNOWN


@dataclass(frozen=True)
class Rerunner:
    """Clears a key's run for a re-run request, once per ``rerun.id`` (the module's table)."""

    store: IdempotencyStore
    clearing: Clearing
    gate: AirflowGate
    airflow_limit: ConcurrencyLimit
    store_hold: StoreHold
    crash_at: CrashPoint | None = None  # test-only fault hook (consumer/crash.py)

    def rerun(
        self,
        record: InboundRecord,
        request: TriggerRequest,
        entry: StoredEntry,
        origin: RequestOrigin,
        owned: Callable[[], bool],
        *,
        made_by_it: bool = False,
    ) -> Outcome:
        """Re-run the run ``entry`` names, or answer what an earlier re-run did.

        A re-run request that made its key's first run (``made_by_it``, re-delivered) is
        ``triggered`` again, never a clear: its re-run id is spent on that trigger.

        Args:
            record: the request record.
            request: the valid request, with ``rerun``, of the same fingerprint as ``entry``.
            entry: the key's final store entry: the run to re-run.
            origin: the request's origin (the ``completed`` reply of a tracked re-run).
            owned: whether this worker still owns the record's partition.
            made_by_it: the entry says this very record made the run (``triggered``).

        Returns:
            ``triggered`` (``made_by_it``), ``rerun``, ``duplicate`` (this re-run was done,
            or is being done, by another request) or ``error`` (Airflow refused the clear,
            or knows no such run).

        Raises:
            StoppingError: the worker stopped, or the partition was revoked, meanwhile.
            ConfigError: credentials or TLS are wrong: the worker must stop.
        """
        rerun = _rerun_of(request)
        at = (record.topic, record.partition, record.offset)
        key, hold = request.idempotency_key, self.store_hold.call
        mark = hold(lambda: self.store.get_rerun(key, rerun.id), "read_rerun")
        if made_by_it and (mark is None or mark.evidence is None):
            if mark is None or mark.status is RerunStatus.PENDING:  # crashed before noting it
                self.note_triggered(request, at, entry.run_state or "unknown")
            return Outcome.triggered(record, request, stored_run(entry), attempts=0)
        try:
            attempts = 0
            if mark is None:
                before = self._clock(entry, owned)
                attempts = before.attempts
                _check_clearable(entry, before.clock)
                mark = hold(
                    lambda: self.store.mark_rerun(
                        key, rerun.id, evidence=before.clock.text(), at=at
                    ),
                    "mark_rerun",
                )
            seen = judge_rerun(mark, at)
            if seen not in CLEARS:
                return _answer(record, request, entry, mark, seen, attempts=attempts)
            if not owned():  # the pending mark stays: the new owner resumes the re-run
                raise StoppingError("partition revoked before the clear")
            cleared = self._clear(entry, mark, rerun, owned)
            after, attempts = cleared.clock, attempts + cleared.attempts
        except AirflowError as exc:  # the pending mark stays: a re-send resumes it
            return Outcome.failed(record, exc, request=request, attempts=exc.attempts)
        crash_here("after_clear", self.crash_at)  # cleared; the store says pending
        # a run Airflow had nothing to clear in (only_failed, none failed) does not end again
        track = request.track and cleared.cleared
        hold(
            lambda: self.store.record_rerun(
                key, rerun.id, run_state=after.state, at=at, track=track, origin=origin
            ),
            "record_rerun",
        )
        return Outcome.rerun(record, request, stored_run(entry, after.state), attempts=attempts)

    def claim_for_trigger(self, request: TriggerRequest, at: Coordinates) -> None:
        """Before a re-run request triggers its key's first run: mark its id, without a clock.

        So that a request of the same key and id elsewhere waits for this one's answer
        (CLAIMED) instead of clearing the run this one is making.
        """
        rerun = _rerun_of(request)
        key = request.idempotency_key
        self.store_hold.call(
            lambda: self.store.mark_rerun(key, rerun.id, evidence=None, at=at), "mark_rerun"
        )

    def note_triggered(self, request: TriggerRequest, at: Coordinates, run_state: str) -> None:
        """Note a re-run request that made its key's first run: its ``rerun.id`` is spent."""
        rerun = _rerun_of(request)
        key = request.idempotency_key
        self.store_hold.call(
            lambda: self.store.record_rerun(key, rerun.id, run_state=run_state, at=at),
            "record_rerun",
        )

    def _clock(self, entry: StoredEntry, owned: Callable[[], bool]) -> Clocked:
        """The run's clock before the clear, read through outages."""
        clearing = self.clearing
        return self._held(lambda: clearing.clock(entry.dag_id, entry.dag_run_id), owned)

    def _clear(
        self, entry: StoredEntry, mark: RerunMark, rerun: Rerun, owned: Callable[[], bool]
    ) -> Clocked:
        """Clear the run unless the mark's clock shows it was cleared; its clock after."""
        clearing = self.clearing
        kept = RunClock.from_text(mark.evidence) if mark.evidence is not None else None
        if kept is None:  # no clock was kept (or none readable): the one read now stands in
            kept = self._clock(entry, owned).clock
            _check_clearable(entry, kept)
        before = kept
        return self._held(
            lambda: clearing.ensure_cleared(
                entry.dag_id,
                entry.dag_run_id,
                before,
                only_failed=rerun.only_failed,
                owned=owned,
            ),
            owned,
        )

    def _held(self, call: Callable[[], Clocked], owned: Callable[[], bool]) -> Clocked:
        """One clearing call within the Airflow call limit, held through outages."""
        with self.airflow_limit.slot() as slot:
            try:
                # a clearing call proves Airflow serves, not that it makes runs for others
                held = call_held(call, self.gate, owned, succeeded=self.gate.record_served)
            except AirflowUnavailableError:
                slot.report(CallOutcome.OVERLOADED)
                raise
            except AirflowError:
                slot.report(CallOutcome.ANSWERED)
                raise
            slot.report(CallOutcome.ANSWERED)
        return replace(held.result, attempts=held.result.attempts + held.attempts)


def _check_clearable(entry: StoredEntry, clock: RunClock) -> None:
    """Refuse a clear that a crash could make happen twice unseen (Airflow 2, unfinished)."""
    if not clock.shows_a_clear:
        raise AirflowError(
            ErrorCode.AIRFLOW_REJECTED,
            f"run {entry.dag_run_id} is {clock.state}: Airflow 2 keeps no trace of a clear "
            "of a run that has not finished, so it cannot be re-run exactly once; re-send "
            "the re-run once the run has ended",
            {"dag_id": entry.dag_id, "dag_run_id": entry.dag_run_id, "attempts": 1},
        )


def _rerun_of(request: TriggerRequest) -> Rerun:
    if request.rerun is None:
        raise ValueError("not a re-run request")
    return request.rerun


def _answer(
    record: InboundRecord,
    request: TriggerRequest,
    entry: StoredEntry,
    mark: RerunMark,
    seen: RerunSeen,
    *,
    attempts: int,
) -> Outcome:
    """The answer of a re-run that this request does not clear (OWN, KNOWN, CLAIMED).

    The run's state is the latest the store knows: the entry's when its tracking was
    re-armed by this re-run or later (the tracker records the end), else the mark's.
    """
    rearmed = entry.created_at >= mark.created_at
    run = stored_run(entry, entry.run_state if rearmed else mark.run_state)
    if seen is RerunSeen.OWN:  # a mark without a clock: its re-run id made the first run
        build = Outcome.triggered if mark.evidence is None else Outcome.rerun
        return build(record, request, run, attempts=attempts)
    return Outcome.duplicate(record, request, run, attempts=attempts)
