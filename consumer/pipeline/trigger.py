"""Trigger the run through Airflow, holding requests while no trigger succeeds (spec §3)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from consumer.airflow import AirflowApi
from consumer.airflow.gate import HOLD_RETRY_INITIAL_DELAY, HOLD_RETRY_MAX_DELAY, AirflowGate
from consumer.airflow.limit import Call, CallOutcome, ConcurrencyLimit
from consumer.airflow.runs import TriggerResult
from consumer.contract import TriggerRequest
from consumer.errors import AirflowError, AirflowUnavailableError, StoppingError

T = TypeVar("T")


def trigger(
    request: TriggerRequest,
    dag_run_id: str,
    airflow: AirflowApi,
    gate: AirflowGate,
    limit: ConcurrencyLimit,
    *,
    owned: Callable[[], bool] = lambda: True,
) -> TriggerResult:
    """Create (or find) the run of ``dag_run_id`` within the Airflow call limit.

    An outage of any length fails nothing: the request is held at the gate. The limit is
    told how Airflow coped (a latency sample, or overload). ``owned`` is asked before each
    retry after a spent budget: a request whose partition was revoked meanwhile stops
    calling Airflow (its new owner resumes it), so two owners seldom race on one record.

    Raises:
        AirflowError: Airflow refused the request, or it outlasted its retry budget twice
            while Airflow kept making runs for others (``airflow_unavailable``).
        ConfigError: credentials or TLS are wrong: the worker must stop.
        StoppingError: the worker stopped while the request waited on Airflow.
    """
    with limit.slot() as call:
        try:
            result = _trigger_held(request, dag_run_id, airflow, gate, owned)
        except AirflowUnavailableError:
            call.report(CallOutcome.OVERLOADED)
            raise
        except AirflowError:
            call.report(CallOutcome.ANSWERED)  # a refusal of the data is a healthy answer
            raise
        _report(call, result)
        return result


def _report(call: Call, result: TriggerResult) -> None:
    # a clean answer takes one POST, or a POST and the GET that reads a duplicate after its
    # 409; more calls mean the client retried a 5xx, 429 or timeout (or, rarely, a JWT)
    clean_calls = 1 if result.created else 2
    if result.attempts > clean_calls:
        call.report(CallOutcome.OVERLOADED)
    else:
        # only a single POST is one round trip, a latency sample
        call.report(CallOutcome.ANSWERED, latency=call.elapsed() if result.created else None)


def _trigger_held(
    request: TriggerRequest,
    dag_run_id: str,
    airflow: AirflowApi,
    gate: AirflowGate,
    owned: Callable[[], bool],
) -> TriggerResult:
    """Create (or find) the run; hold while no trigger succeeds (raises as ``trigger``).

    A POST that may have reached Airflow in an earlier budget is carried into the result
    (``may_have_reached``).
    """

    def post() -> TriggerResult:
        return airflow.trigger(
            request.dag_id,
            dag_run_id,
            conf=request.conf,
            logical_date=request.logical_date,
            note=request.note,
        )

    held = call_held(post, gate, owned)
    return _across_holds(held.result, reached=held.reached, attempts=held.attempts)


@dataclass(frozen=True)
class Held(Generic[T]):
    """What a call held through outages returned, and what its failed budgets did.

    Attributes:
        result: the call's answer.
        reached: a failed earlier attempt may have reached Airflow although no answer came.
        attempts: the HTTP calls of the failed earlier budgets.
    """

    result: T
    reached: bool
    attempts: int


def call_held(
    call: Callable[[], T],
    gate: AirflowGate,
    owned: Callable[[], bool],
    *,
    succeeded: Callable[[], None] | None = None,
) -> Held[T]:
    """Run ``call`` (one retry budget of Airflow calls); hold while no trigger succeeds.

    ``succeeded`` tells the gate what an answer proves (default ``gate.record_success``:
    a run was made; a call that makes no run passes ``gate.record_served``).

    Each retry budget that runs out while Airflow made runs for others is counted; the
    call fails on the second such budget in a row (one started after Airflow was seen
    making runs, so a recovery racing the first budget's end fails nothing). Otherwise the
    call is held and retried after a backoff.

    Raises:
        AirflowError: as ``trigger``.
        StoppingError: the worker stopped, or the partition was revoked, while it waited.
    """
    reached = False
    attempts = 0
    delay = HOLD_RETRY_INITIAL_DELAY
    failed_while_others_succeeded = False
    while True:
        began = time.monotonic()
        try:
            result = call()
        except AirflowUnavailableError as exc:
            if gate.stopping or exc.details.get("stopped"):
                raise StoppingError("stopping while retrying Airflow") from None
            attempts += exc.attempts
            reached = reached or exc.may_have_reached
            if not owned():  # revoked while its budget ran: the new owner resumes it
                raise StoppingError("partition revoked while retrying Airflow") from None
            if gate.others_succeeded_since(began):
                if failed_while_others_succeeded:
                    exc.details["attempts"] = attempts
                    raise  # Airflow makes runs for others: this call's budget is spent
                failed_while_others_succeeded = True
                continue
            failed_while_others_succeeded = False
            gate.hold(exc.message)
            if not gate.wait_to_retry(delay):
                raise StoppingError("stopping while Airflow is unavailable") from None
            delay = min(delay * 2, HOLD_RETRY_MAX_DELAY)
            continue
        except AirflowError as exc:
            if _answered(exc):  # a definite refusal proves the endpoint serves
                gate.record_served()
            raise
        (succeeded or gate.record_success)()
        return Held(result, reached, attempts)


def _across_holds(result: TriggerResult, *, reached: bool, attempts: int) -> TriggerResult:
    """The result as one call: a POST of an earlier budget may have reached Airflow too."""
    return replace(
        result,
        may_have_reached=result.may_have_reached or reached,
        attempts=result.attempts + attempts,
    )


def _answered(exc: AirflowError) -> bool:
    """Whether Airflow itself gave the refusal (not a check made before any call)."""
    attempts = exc.details.get("attempts")
    return isinstance(attempts, int) and attempts > 0
