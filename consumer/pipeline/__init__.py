"""The request pipeline: decode → validate → policy → dedup → trigger, in spec §1 order.

Each stage is its own module; ``Pipeline`` strings them together. ``admit`` runs the
cheap, pure stages, ``known_runs`` and ``recall`` answer keys the store already maps to
a run (all on the worker loop's thread, which needs the idempotency key to keep same-key
requests in order); ``execute`` runs dedup and trigger (on a worker thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from consumer.airflow import AirflowApi, TriggerResult
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import Call, CallOutcome, ConcurrencyLimit
from consumer.contract import TriggerRequest
from consumer.crash import CrashPoint, crash_here
from consumer.errors import AirflowError, AirflowUnavailableError, Rejected
from consumer.limits import Limits
from consumer.outcome import Outcome
from consumer.pipeline.decode import decode
from consumer.pipeline.dedup import check_known, claim, final_entries, stored_run
from consumer.pipeline.policy import Policy, check_policy
from consumer.pipeline.trigger import trigger
from consumer.pipeline.validate import validate
from consumer.record import InboundRecord
from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin, StoredEntry


@dataclass(frozen=True)
class Pipeline:
    """Turns one Kafka record into an ``Outcome``; never raises ``Rejected``."""

    limits: Limits
    policy: Policy
    store: IdempotencyStore
    airflow: AirflowApi
    gate: AirflowGate
    # bounds concurrent Airflow calls below MAX_IN_FLIGHT: Airflow 3's API collapses past
    # ~24 concurrent triggers (notes §6), while requests answered from the store need no slot
    airflow_limit: ConcurrencyLimit
    crash_at: CrashPoint | None = None  # test-only fault hook (consumer/crash.py)

    def process(self, record: InboundRecord) -> Outcome:
        """Run every stage on ``record`` (spec §1)."""
        admitted = self.admit(record)
        return admitted if isinstance(admitted, Outcome) else self.execute(record, admitted)

    def admit(self, record: InboundRecord) -> TriggerRequest | Outcome:
        """Decode, validate and check policy: the request, or the ``rejected`` outcome."""
        payload: Mapping[str, Any] | None = None
        request: TriggerRequest | None = None
        try:
            payload = decode(record.value, self.limits)
            request = validate(payload, self.limits, headers=record.headers)
            check_policy(request, self.policy)
        except Rejected as rejected:  # stages stop a message by raising Rejected (STYLE §5)
            return Outcome.rejected(record, rejected, request=request, payload=payload)
        return request

    def known_runs(self, requests: Iterable[TriggerRequest]) -> dict[str, StoredEntry]:
        """The store's final entries for these requests' keys, in one read (no Airflow call)."""
        return final_entries({request.idempotency_key for request in requests}, self.store)

    def recall(self, record: InboundRecord, request: TriggerRequest, known: StoredEntry) -> Outcome:
        """Answer an admitted request whose key the store maps to a run (``known_runs``).

        Returns:
            ``duplicate``, or ``rejected`` when the key was used for a different request.
        """
        try:
            check_known(request, known)
        except Rejected as rejected:  # idempotency_key_reused
            return Outcome.rejected(record, rejected, request=request)
        return Outcome.duplicate(record, request, stored_run(known), attempts=0)

    def execute(self, record: InboundRecord, request: TriggerRequest) -> Outcome:
        """Deduplicate and trigger an admitted request; record the run it maps to."""
        try:
            claimed = claim(request, self.store)
        except Rejected as rejected:  # idempotency_key_reused: the dedup stage's refusal
            return Outcome.rejected(record, rejected, request=request)
        if claimed.known is not None:
            return Outcome.duplicate(record, request, stored_run(claimed.known), attempts=0)
        try:
            result = self._trigger(request, claimed.dag_run_id)
        except AirflowUnavailableError as exc:
            # keep the pending mark: the POST may have been accepted (spec §3)
            return Outcome.failed(record, exc, request=request, attempts=_attempts(exc))
        except AirflowError as exc:
            self.store.release(request.idempotency_key)  # no run: a corrected retry may reuse it
            return Outcome.failed(record, exc, request=request, attempts=_attempts(exc))
        # a run found under our run id is ours if an earlier attempt of this request was pending
        crash_here("after_trigger", self.crash_at)  # the run exists; the store says pending
        made_here = result.created or claimed.resumed
        status = EntryStatus.TRIGGERED if made_here else EntryStatus.DUPLICATE
        self.store.record(
            request.idempotency_key,
            fingerprint=claimed.fingerprint,
            dag_id=request.dag_id,
            dag_run_id=result.dag_run_id,
            status=status,
            run_state=result.state,
            logical_date=result.logical_date.isoformat() if result.logical_date else None,
            run_url=result.run_url,
            track=request.track,
            origin=RequestOrigin.of(
                record, correlation_id=request.correlation_id, reply_topic=request.reply_topic
            ),
        )
        build = Outcome.triggered if made_here else Outcome.duplicate
        return build(record, request, result, attempts=result.attempts)

    def _trigger(self, request: TriggerRequest, dag_run_id: str) -> TriggerResult:
        """Trigger within the Airflow concurrency limit and tell it how Airflow coped."""
        with self.airflow_limit.slot() as call:
            try:
                result = trigger(request, dag_run_id, self.airflow, self.gate)
            except AirflowUnavailableError:
                call.report(CallOutcome.OVERLOADED)
                raise
            except AirflowError:
                call.report(CallOutcome.ANSWERED)  # a refusal of the data is a healthy answer
                raise
            _report(call, result)
            return result

    def airflow_available(self) -> bool:
        """False while an Airflow outage is waited out (the loop stops fetching)."""
        return self.gate.available


def _report(call: Call, result: TriggerResult) -> None:
    # a clean answer takes one POST, or a POST and the GET that reads a duplicate after its
    # 409; more calls mean the client retried a 5xx, 429 or timeout (or, rarely, a JWT)
    clean_calls = 1 if result.created else 2
    if result.attempts > clean_calls:
        call.report(CallOutcome.OVERLOADED)
    else:
        # only a single POST is one round trip, a latency sample
        call.report(CallOutcome.ANSWERED, latency=call.elapsed() if result.created else None)


def _attempts(error: AirflowError) -> int:
    attempts = error.details.get("attempts", 1)
    return attempts if isinstance(attempts, int) else 1
