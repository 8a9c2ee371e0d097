"""Trigger the run through Airflow, holding requests while Airflow as a whole is down (spec §3)."""

from __future__ import annotations

from consumer.airflow import AirflowApi
from consumer.airflow.gate import AirflowGate
from consumer.airflow.runs import TriggerResult
from consumer.contract import TriggerRequest
from consumer.errors import AirflowUnavailableError, TriggerConsumerError


class StoppingError(TriggerConsumerError):
    """Raised when a request waiting on Airflow is abandoned because the worker is stopping.

    Not an outcome: the request gets no reply and its offset is not committed, so the
    next owner of the partition processes it again.
    """


def trigger(
    request: TriggerRequest, dag_run_id: str, airflow: AirflowApi, gate: AirflowGate
) -> TriggerResult:
    """Create (or find) the run of ``dag_run_id``; an outage of any length fails nothing.

    Raises:
        AirflowError: Airflow refused the request, or it outlasted its retry budget while
            Airflow kept answering other calls (``airflow_unavailable``).
        ConfigError: credentials or TLS are wrong: the worker must stop.
        StoppingError: the worker stopped while the request waited on Airflow.
    """
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
