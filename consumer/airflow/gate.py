"""AirflowGate: whether Airflow as a whole answers, and the wait while it does not (spec §3).

When a call runs out of retry budget, the pipeline's trigger stage asks ``answers()``: if
Airflow answers other calls the request fails; otherwise it waits in ``wait_until_up()``,
which returns False when the worker stops first (the request is then abandoned). The worker
loop reads ``available`` to stop fetching during an outage (backpressure).
"""

from __future__ import annotations

import threading

import structlog

from consumer.airflow import AirflowApi
from consumer.errors import ConfigError, TriggerConsumerError

log = structlog.get_logger(__name__)

PROBE_INITIAL_DELAY = 1.0
PROBE_MAX_DELAY = 15.0


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
        """Probe Airflow once (version endpoint, with credentials checked by the client).

        Returns:
            True when Airflow answered; False (with ``reason`` set) when it did not.

        Raises:
            ConfigError: credentials or TLS are wrong: the worker must stop.
        """
        try:
            self._airflow.ping()
        except ConfigError:
            raise
        except TriggerConsumerError as exc:
            self.reason = str(exc)
            return False
        self.reason = None
        return True

    def wait_until_up(self) -> bool:
        """Block until Airflow answers again, or the worker stops.

        Returns:
            True once Airflow answers; False when the worker stopped first (the caller
            abandons its request).

        Raises:
            ConfigError: credentials or TLS are wrong: the worker must stop.
        """
        self._up.clear()
        with self._probe_lock:
            delay = PROBE_INITIAL_DELAY
            while not self._up.is_set():
                if self._stop.is_set():
                    return False
                if self.answers():
                    log.info("airflow_available_again")
                    self._up.set()
                    return True
                log.warning("airflow_unavailable_holding_requests", reason=self.reason)
                self._stop.wait(delay)
                delay = min(delay * 2, PROBE_MAX_DELAY)
        return True
