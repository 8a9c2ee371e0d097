"""Trigger the run through Airflow, holding requests while Airflow as a whole is down (spec §3)."""

from __future__ import annotations

import threading

import structlog

from consumer.airflow import AirflowApi
from consumer.airflow.runs import TriggerResult
from consumer.contract import TriggerRequest
from consumer.errors import AirflowUnavailableError, ConfigError, TriggerConsumerError

log = structlog.get_logger(__name__)

PROBE_INITIAL_DELAY = 1.0
PROBE_MAX_DELAY = 15.0


class StoppingError(TriggerConsumerError):
    """Raised when a request waiting on Airflow is abandoned because the worker is stopping.

    Not an outcome: the request gets no reply and its offset is not committed, so the
    next owner of the partition processes it again.
    """


class AirflowGate:
    """Knows whether Airflow as a whole answers; requests wait here during an outage.

    One thread probes at a time; the others wait on the lock and find Airflow up after it.
    The worker loop reads ``available`` to stop fetching (backpressure).
    """

    def __init__(self, airflow: AirflowApi, stop: threading.Event) -> None:
        """Create the gate.

        Args:
            airflow: the client whose ``ping`` tells whether Airflow answers.
            stop: set when the worker stops; waiting requests give up then.
        """
        self._airflow = airflow
        self._stop = stop
        self._up = threading.Event()
        self._up.set()
        self._probe_lock = threading.Lock()
        self.reason: str | None = None

    @property
    def stopping(self) -> bool:
        """True once the worker stops: nothing may wait any longer."""
        return self._stop.is_set()

    @property
    def available(self) -> bool:
        """False while an outage is being waited out."""
        return self._up.is_set()

    def answers(self) -> bool:
        """Probe Airflow once (version endpoint, with credentials checked by the client)."""
        try:
            self._airflow.ping()
        except ConfigError:
            raise
        except TriggerConsumerError as exc:
            self.reason = str(exc)
            return False
        self.reason = None
        return True

    def wait_until_up(self) -> None:
        """Block until Airflow answers again.

        Raises:
            StoppingError: when the worker stops first.
        """
        self._up.clear()
        with self._probe_lock:
            delay = PROBE_INITIAL_DELAY
            while not self._up.is_set():
                if self._stop.is_set():
                    raise StoppingError("stopping while Airflow is unavailable")
                if self.answers():
                    log.info("airflow_available_again")
                    self._up.set()
                    return
                log.warning("airflow_unavailable_holding_requests", reason=self.reason)
                self._stop.wait(delay)
                delay = min(delay * 2, PROBE_MAX_DELAY)


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
            gate.wait_until_up()
