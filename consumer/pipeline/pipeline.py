"""The request pipeline: decode → validate → policy → dedup → trigger, in spec §1 order.

One message travels in two steps::

    triage(records) ── per record: decode → validate → policy → fingerprint ──┐
        one store read for the whole poll (get_many) ──► judge each key ◄─────┘
        ├─► Outcome     rejected, internal_error, or duplicate / key reused from the store
        └─► Admitted    new or resumed key (or one whose earlier request is still running)
    execute(admitted) ── pending mark → trigger (within the Airflow call limit) → record
        └─► Outcome     triggered, duplicate, rejected (key reused) or error

``triage`` runs on the worker loop's thread and needs no Airflow call; ``execute`` runs
on a dispatcher thread. A record of a route topic (spec §8 Routes) becomes a ``Fanout``:
one item per request its event derives (the routes build them unscreened), each screened
here and judged like a native request. Each stage is its own module; the pure ones run
through ``screen`` (``pipeline/screen.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from consumer.airflow import AirflowApi, TriggerResult
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import ConcurrencyLimit
from consumer.boundary import guarded
from consumer.contract import TriggerRequest
from consumer.crash import CrashPoint, crash_here
from consumer.errors import AirflowError, AirflowUnavailableError, Rejected, StoppingError
from consumer.fingerprint import fingerprint
from consumer.flow.parking import Deferred, Flow, parked, wait_reason
from consumer.limits import Limits
from consumer.outcome import Outcome
from consumer.pipeline.dedup import (
    ANSWERED,
    Seen,
    claimed,
    judge,
    made_the_run,
    refused_again,
    releases_key,
    remembered,
    stored_outcome,
)
from consumer.pipeline.items import Admitted, Busy, Fanout, Owned
from consumer.pipeline.policy import Policy
from consumer.pipeline.rerun import Clearing, Rerunner
from consumer.pipeline.screen import Refusal, screen
from consumer.pipeline.sending import as_sent, origin_of
from consumer.pipeline.trigger import trigger
from consumer.record import InboundRecord
from consumer.run_id import run_id_for
from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin, StoredEntry
from consumer.store.deferred import DeferralReason
from consumer.store.holds import StoreHold

if TYPE_CHECKING:
    from consumer.routes.derive import Expansion

log = structlog.get_logger(__name__)


class EventRouter(Protocol):
    """Expands records of route topics (``consumer.routes.Router`` fits)."""

    def reads(self, topic: str) -> bool:
        """Whether ``topic`` is a route topic."""

    def expand(self, record: InboundRecord, limits: Limits) -> Expansion:
        """The requests the record's event derives, unscreened; never raises ``Rejected``."""


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Pipeline:
    """Turns Kafka records into ``Outcome``s; never raises ``Rejected``."""

    limits: Limits
    policy: Policy
    store: IdempotencyStore
    airflow: AirflowApi
    gate: AirflowGate
    # bounds concurrent Airflow calls below MAX_IN_FLIGHT: Airflow 3's API collapses past
    # ~24 concurrent triggers (notes §6), while requests answered from the store need no slot
    airflow_limit: ConcurrencyLimit
    crash_at: CrashPoint | None = None  # test-only fault hook (consumer/crash.py)
    # spec §3: a store outage holds requests (retried with backoff), it never fails them
    store_hold: StoreHold = field(default_factory=StoreHold)
    router: EventRouter | None = None  # spec §8 Routes: None when no route is configured
    clearing: Clearing | None = None  # re-runs (issue 29): None refuses them as a bug
    trace_context: bool = True  # pass a message's W3C trace context into the run's conf
    flow: Flow | None = None  # issue 30: limited DAGs and not_before defer; None: never

    def triage(
        self, records: Sequence[InboundRecord], busy: Busy
    ) -> list[Outcome | Admitted | Fanout]:
        """Answer what needs no Airflow call; admit the rest (one store read per poll).

        A key whose earlier request is still in flight (``busy``, or admitted earlier in
        this poll) is admitted whatever the store says now: its answer must follow that
        request's (per-key order, spec §3).

        Args:
            records: one poll's records.
            busy: whether a key has an admitted request still queued or running.

        Returns:
            One item per record, in order (a ``Fanout`` for a record of a route topic).
        """
        screened = [self._screen(record) for record in records]
        flat = [
            sub
            for item in screened
            for sub in (item.items if isinstance(item, Fanout) else (item,))
        ]
        entries = self._read_entries(
            {item.request.idempotency_key for item in flat if isinstance(item, Admitted)}
        )
        waiting: set[str] = set()  # keys admitted earlier in this poll

        def judged(item: Outcome | Admitted) -> Outcome | Admitted:
            if not isinstance(item, Admitted):
                return item
            key = item.request.idempotency_key
            current = entries is not None and key not in waiting and not busy(key)
            result = self._judge(item, entries.get(key) if entries else None, current=current)
            if isinstance(result, Admitted):
                waiting.add(key)
            return result

        return [
            Fanout(tuple(map(judged, item.items)), item.records)
            if isinstance(item, Fanout)
            else judged(item)
            for item in screened
        ]

    def execute(
        self, admitted: Admitted, owned: Owned = _always, *, released: bool = False
    ) -> Outcome | Deferred:
        """Claim the key, trigger the run and record it (spec §3: pending mark before POST).

        Args:
            admitted: the request ``triage`` admitted.
            owned: whether this worker still owns the record's partition; asked right
                before the Airflow call, so a revoked partition's work starts none.
            released: let go by the releaser (issue 30): never deferred again.

        Returns:
            The outcome, or ``Deferred``: parked in the store (no reply yet, offset done).

        Raises:
            ConfigError: credentials or TLS are wrong: the worker must stop.
            StoppingError: the worker stopped while the request waited on Airflow or the
                store, or the partition was revoked (no reply: its owner processes it again).
        """
        record, request = admitted.record, admitted.request
        key = request.idempotency_key
        hold = self.store_hold.call
        entry = admitted.entry if admitted.current else hold(lambda: self.store.get(key), "read")
        origin = self._origin(record, request)
        entry, seen = self._claim(admitted, entry, origin)
        if not released and (deferred := self._defer(admitted, seen)) is not None:
            return deferred
        if entry is not None and seen in ANSWERED:
            return self._answered(admitted, entry, seen, owned)
        if not owned():  # the pending mark stays: the new owner resumes the request
            raise StoppingError("partition revoked before the Airflow call")
        return self._trigger(admitted, seen, origin, owned)

    def _trigger(
        self, admitted: Admitted, seen: Seen, origin: RequestOrigin, owned: Owned
    ) -> Outcome:
        """POST the run of a key held NEW, RESUMED or CLAIMED; record who made it."""
        record, request = admitted.record, admitted.request
        key, hold = request.idempotency_key, self.store_hold.call
        at = (record.topic, record.partition, record.offset)
        if request.rerun is not None and seen is not Seen.CLAIMED:
            self._rerunner().claim_for_trigger(request, at)
        try:
            traced = as_sent(
                request, record, admitted.fingerprint, trace_context=self.trace_context
            )
            run_id = run_id_for(key)
            limit = self.airflow_limit
            result = trigger(traced, run_id, self.airflow, self.gate, limit, owned=owned)
        except AirflowUnavailableError as exc:
            # keep the pending mark: the POST may have been accepted (spec §3)
            return Outcome.failed(record, exc, request=request, attempts=exc.attempts)
        except AirflowError as exc:
            if releases_key(seen):  # no run: a corrected retry may reuse the key
                refusal = remembered(key, at, exc)
                hold(lambda: self.store.release(key, refusal=refusal), "release")
            return Outcome.failed(record, exc, request=request, attempts=exc.attempts)
        crash_here("after_trigger", self.crash_at)  # the run exists; the store says pending
        made_here = made_the_run(seen, result, (*at, admitted.fingerprint))
        if not made_here and result.source is not None and request.rerun is None:
            # the run names the request that made it, maybe killed before it recorded it:
            # this request's own mark stays, so that one's re-delivery finds the key
            # unsettled, POSTs, meets the run naming it, and is answered triggered
            return Outcome.duplicate(record, request, result, attempts=result.attempts)
        # the run exists
        stored = hold(lambda: self._record(admitted, result, made_here=made_here), "record")
        # the key had a run already (not one another request is still making): clear it
        if request.rerun is not None and not made_here and stored.status is not EntryStatus.PENDING:
            return self._rerunner().rerun(record, request, stored, origin, owned)
        if request.rerun is not None and made_here:
            self._rerunner().note_triggered(request, at, result.state)
        build = Outcome.triggered if made_here else Outcome.duplicate
        return build(record, request, result, attempts=result.attempts)

    def _claim(
        self, admitted: Admitted, entry: StoredEntry | None, origin: RequestOrigin
    ) -> tuple[StoredEntry | None, Seen]:
        """Write the pending mark of a NEW key; the key's entry after it, and how it is held."""
        at = (origin.topic, origin.partition, origin.offset)
        seen = judge(entry, admitted.fingerprint, at)
        if seen is not Seen.NEW:
            return entry, seen
        key, dag_id = admitted.request.idempotency_key, admitted.request.dag_id
        entry = self.store_hold.call(
            lambda: self.store.mark_pending(
                key,
                fingerprint=admitted.fingerprint,
                dag_id=dag_id,
                dag_run_id=run_id_for(key),
                origin=origin,
            ),
            "mark_pending",
        )
        # another process (replica) may have claimed the key since the read
        return entry, claimed(entry, admitted.fingerprint, at)

    def _answered(
        self, admitted: Admitted, entry: StoredEntry, seen: Seen, owned: Owned
    ) -> Outcome:
        """The answer for a key the store maps to a run: from the store, or a re-run."""
        record, request = admitted.record, admitted.request
        if seen is Seen.REUSED:
            # this very record may have released the key before another request took it
            key, at = request.idempotency_key, (record.topic, record.partition, record.offset)
            refusal = self.store_hold.call(lambda: self.store.refusal_at(key, at), "read")
            if refusal is not None:
                return refused_again(record, request, refusal)
        if request.rerun is None or seen is Seen.REUSED:
            return stored_outcome(record, request, entry, seen)
        made_by_it = seen is Seen.OWN and entry.status is EntryStatus.TRIGGERED
        origin = self._origin(record, request)
        return self._rerunner().rerun(record, request, entry, origin, owned, made_by_it=made_by_it)

    def _defer(self, admitted: Admitted, seen: Seen) -> Deferred | None:
        """Park a request that must wait (a limited DAG, a ``not_before`` ahead); None: go.

        Only requests that would reach Airflow wait: answers from the store never do, but a
        re-run (a clear queues the run again) does. A request whose key another request
        holds waits behind it when that one may be deferred (a ``not_before`` of the same
        fingerprint now past): the releaser lets them go in arrival order.
        """
        flow, request = self.flow, admitted.request
        if flow is None or (seen in ANSWERED and (request.rerun is None or seen is Seen.REUSED)):
            return None
        reason = wait_reason(request, flow.limits, datetime.now(UTC))
        if reason is None and seen is Seen.CLAIMED and request.not_before is not None:
            reason = DeferralReason.NOT_BEFORE
        if reason is None:
            return None
        row = parked(admitted.record, request, admitted.fingerprint, reason)
        if self.store_hold.call(lambda: self.store.defer(row), "defer"):
            flow.waiting.deferred_here()
        flow.wake()
        return Deferred(reason, row.due_at)

    def flow_available(self) -> bool:
        """False while ``MAX_DEFERRED`` requests wait (the loop stops fetching)."""
        return self.flow is None or not self.flow.waiting.full()

    def airflow_available(self) -> bool:
        """False while an Airflow outage is waited out (the loop stops fetching)."""
        return self.gate.available

    def store_available(self) -> bool:
        """False while a store outage is waited out (the loop stops fetching)."""
        return self.store_hold.available

    def _origin(self, record: InboundRecord, request: TriggerRequest) -> RequestOrigin:
        return origin_of(record, request, trace_context=self.trace_context)

    def _screen(self, record: InboundRecord) -> Outcome | Admitted | Fanout:
        """The pure stages and the fingerprint of one record (within the boundary)."""
        return guarded(record, None, self._screen_one, record)

    def _screen_one(self, record: InboundRecord) -> Outcome | Admitted | Fanout:
        if self.router is not None and self.router.reads(record.topic):
            return self._fan_out(record, self.router.expand(record, self.limits))
        screened = screen(record.value, self.limits, self.policy, record.headers)
        return _admit(record, screened)

    def _fan_out(self, record: InboundRecord, expansion: Expansion) -> Outcome | Fanout:
        """An event record's items: its own refusal, or one per derived request, screened."""
        if expansion.refusal is not None:
            return Outcome.rejected(record, expansion.refusal)
        items: list[Outcome | Admitted] = []
        for derived, built in expansion.derived:
            if isinstance(built, Rejected):  # its route's match failed on the event
                items.append(Outcome.rejected(derived, built))
                continue
            screened = screen(None, self.limits, self.policy, record.headers, read=built)
            items.append(_admit(derived, screened))
        return Fanout(tuple(items), tuple(derived for derived, _ in expansion.derived))

    def _read_entries(self, keys: set[str]) -> dict[str, StoredEntry] | None:
        """The store's entries of ``keys`` in one read; None when the read failed."""
        if not keys:
            return {}
        try:
            return self.store_hold.timed(lambda: self.store.get_many(keys), "read_batch")
        except Exception:  # a store hiccup: each request then reads the store in ``execute``
            log.exception("store_read_failed")
            return None

    def _judge(
        self, admitted: Admitted, entry: StoredEntry | None, *, current: bool
    ) -> Outcome | Admitted:
        """Answer a key the store maps to a run; admit the rest (within the boundary)."""
        return guarded(admitted.record, admitted.request, _judged, admitted, entry, current)

    def _rerunner(self) -> Rerunner:
        if self.clearing is None:
            raise ValueError("a re-run request reached a pipeline built without clearing")
        return Rerunner(
            self.store,
            self.clearing,
            self.gate,
            self.airflow_limit,
            self.store_hold,
            crash_at=self.crash_at,
        )

    def _record(self, admitted: Admitted, result: TriggerResult, *, made_here: bool) -> StoredEntry:
        record, request = admitted.record, admitted.request
        return self.store.record(
            request.idempotency_key,
            fingerprint=admitted.fingerprint,
            dag_id=request.dag_id,
            dag_run_id=result.dag_run_id,
            status=EntryStatus.TRIGGERED if made_here else EntryStatus.DUPLICATE,
            run_state=result.state,
            logical_date=result.logical_date.isoformat() if result.logical_date else None,
            run_url=result.run_url,
            track=request.track,
            origin=self._origin(record, request),
        )


def _judged(admitted: Admitted, entry: StoredEntry | None, current: bool) -> Outcome | Admitted:
    record, request = admitted.record, admitted.request
    seen = judge(entry, admitted.fingerprint, (record.topic, record.partition, record.offset))
    # a re-run of a known run needs its re-run mark, and a reuse this record's remembered
    # refusal (``_answered``): both read in ``execute``
    needs_execute = request.rerun is not None or seen is Seen.REUSED
    if current and entry is not None and seen in ANSWERED and not needs_execute:
        return stored_outcome(record, request, entry, seen)
    return Admitted(record, request, admitted.fingerprint, entry, current)


def _admit(record: InboundRecord, screened: TriggerRequest | Refusal) -> Outcome | Admitted:
    """A screened request admitted with its fingerprint, or its refusal answered."""
    if isinstance(screened, Refusal):
        return Outcome.rejected(
            record, screened.rejected, request=screened.request, payload=screened.payload
        )
    return Admitted(record, screened, fingerprint(screened), entry=None, current=False)
