"""Trigger the run through Airflow, holding requests while Airflow as a whole is down (spec §3)."""

from __future__ import annotations

from consumer.airflow import AirflowApi
from consumer.airflow.gate import AirflowGate
from consumer.airflow.limit import Call, CallOutcome, ConcurrencyLimit
from consumer.airflow.runs import TriggerResult
from consumer.contract import TriggerRequest
from consumer.errors import AirflowError, AirflowUnavailableError, StoppingError


def trigger(
    request: TriggerRequest,
    dag_run_id: str,
    airflow: AirflowApi,
    gate: AirflowGate,
    limit: ConcurrencyLimit,
) -> TriggerResult:
    """Create (or find) the run of ``dag_run_id`` within the Airflow call limit.

    An outage of any length fails nothing: the request waits at the gate. The limit is
    told how Airflow coped (a latency sample, or overload).

    Raises:
        AirflowError: Airflow refused the request, or it outlasted its retry budget while
            Airflow kept answering other calls (``airflow_unavailable``).
        ConfigError: credentials or TLS are wrong: the worker must stop.
        StoppingError: the worker stopped while the request waited on Airflow.
    """
    with limit.slot() as call:
        try:
            result = _trigger_held(request, dag_run_id, airflow, gate)
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
    request: TriggerRequest, dag_run_id: str, airflow: AirflowApi, gate: AirflowGate
) -> TriggerResult:
    """Create (or find) the run; while Airflow as a whole is down, wait (raises as ``trigger``)."""
    while True:
        try:
            return airflow.trigger(
                request.dag_id,
                dag_run_id,
                conf=request.conf,
                logical_date=request.logical_date,
                note=request.note,
            )
        except AirflowUnavailableError:
            if gate.stopping:
                raise StoppingError("stopping while retrying Airflow") from None
            if gate.answers():
                raise  # Airflow answers others: this request's budget is spent
            if not gate.wait_until_up():
                raise StoppingError("stopping while Airflow is unavailable") from None
