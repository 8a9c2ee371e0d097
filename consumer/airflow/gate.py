"""AirflowGate: whether Airflow creates runs, and the hold while it does not (spec §3).

``GET /version`` needs no metadata database, so it says nothing about whether a trigger can
succeed (a DB outage, or only the trigger POST failing under overload). The gate therefore
judges from the worker's own triggers: ``record_success`` notes each run made or found.
When a request runs out of retry budget, the trigger stage asks ``others_succeeded_since``
its budget began: if Airflow made runs for others meanwhile, the request fails
(``airflow_unavailable``); otherwise it calls ``hold`` and waits in ``wait_to_retry`` (until
a trigger succeeds or its delay passes), then retries its own, idempotent, trigger — a real
call that needs the metadata DB. The worker loop reads ``available`` and ``reason`` to stop
fetching and report unready while any request is held.

Any definite answer of the trigger endpoint (a run, or a refusal: 404, 400/422, a
logical-date clash) proves that it serves and lifts the hold (``record_served``): a held
request whose own DAG was removed meanwhile must not keep the worker paused. And a hold
probes by itself (``probe``, every ``PROBE_INTERVAL``), so it ends even when no held
request is left to prove Airflow is back (one abandoned, one whose DAG answers 500 for good).
The probe (a trigger for a DAG that cannot exist) proves the endpoint reads its database,
not that it can write a run: while runs cannot be written (a read-only metadata database),
holds end and begin again, each probe waiting twice as long as the last, up to five
minutes; requests still never fail of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

HOLD_RETRY_INITIAL_DELAY = 1.0  # seconds before a held request tries its trigger again
HOLD_RETRY_MAX_DELAY = 15.0
WAKE_INTERVAL = 0.5  # seconds: how soon a held request notices another's success
PROBE_INTERVAL = 5.0  # seconds between a hold's own probes of the trigger endpoint
# a probe answers after a metadata-database read, so it cannot tell that runs cannot be
# written (a read-only database): each hold a probe lifted and no run followed doubles the
# next probe's wait, up to this, so such an outage flaps rarely instead of every 5 s
PROBE_MAX_INTERVAL = 300.0

Probe = Callable[[], bool]
"""One call of the trigger endpoint: True on a definite answer (``AirflowApi.probe_trigger``)."""


def _prove_nothing() -> bool:
    return False


class AirflowGate:
    """Knows whether Airflow creates runs; held requests wait here during an outage.

    The worker loop reads ``available`` to stop fetching (backpressure).
    """

    def __init__(
        self,
        stop: threading.Event,
        probe: Probe = _prove_nothing,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        """Create the gate.

        Args:
            stop: set when the worker stops; waiting requests give up then.
            probe: asked every ``probe_interval`` seconds while held; True lifts the hold.
            probe_interval: seconds between a hold's probes.
        """
        self._stop = stop
        self._probe = probe
        self._probe_interval = probe_interval
        self.probe_delay = probe_interval  # the current wait between probes
        self._held_since = 0.0  # monotonic time the current hold began
        self._probing = threading.Lock()  # held by the one probe thread of a hold
        self._up = threading.Event()
        self._up.set()
        self._last_success: float | None = None  # monotonic time of the last run made or found
        self.reason: str | None = None

    @property
    def stopping(self) -> bool:
        """True once the worker stops: nothing may wait any longer."""
        return self._stop.is_set()

    @property
    def available(self) -> bool:
        """False while an outage is being waited out."""
        return self._up.is_set()

    def _wait_for_probe(self) -> bool:
        """Wait ``probe_delay`` while held; False at once when the hold ends or on stop.

        It wakes every ``WAKE_INTERVAL`` rather than sleeping the whole (up to five minute)
        delay: a hold that ended frees the thread, and one that began meanwhile is timed
        from its own start with the current delay.
        """
        began = time.monotonic()
        while not self._up.is_set():
            # a hold begun meanwhile (this thread outlived the last one) counts from its start
            remaining = max(began, self._held_since) + self.probe_delay - time.monotonic()
            if remaining <= 0:
                return True
            if self._stop.wait(min(WAKE_INTERVAL, remaining)):
                return False
        return False

    def record_success(self) -> None:
        """A trigger made or found its run: Airflow creates runs; held requests retry now."""
        self._last_success = time.monotonic()
        self.probe_delay = self._probe_interval
        self.record_served()

    def record_served(self) -> None:
        """The trigger endpoint gave a definite answer (a run or a refusal): lift the hold.

        Unlike ``record_success`` it does not count as runs made for others, so it never
        makes another request's spent budget fail.
        """
        if not self._up.is_set():
            log.info("airflow_available_again")
            self.reason = None
            self._up.set()

    def others_succeeded_since(self, since: float) -> bool:
        """Whether any trigger succeeded at or after the monotonic time ``since``.

        Args:
            since: when the asking request's current retry budget began.

        Returns:
            True when Airflow demonstrably made runs for others meanwhile.
        """
        last = self._last_success
        return last is not None and last >= since

    def hold(self, reason: str) -> None:
        """Report that a request is held: no trigger succeeds (readiness shows ``reason``).

        Args:
            reason: what the held request's last attempt met.
        """
        self.reason = f"no DAG run could be created: {reason}"
        if self._up.is_set():
            log.warning("airflow_unavailable_holding_requests", reason=self.reason)
            self._held_since = time.monotonic()
        self._up.clear()
        if self._probing.acquire(blocking=False):
            probing = threading.Thread(target=self._probe_while_held, name="airflow-probe")
            probing.daemon = True
            probing.start()

    def _probe_while_held(self) -> None:
        """Probe the trigger endpoint until the hold ends or the worker stops."""
        while True:
            try:
                while self._wait_for_probe():
                    if self._probe():
                        log.info("airflow_probe_answered")
                        # until a run is made, the next hold waits longer for its probe
                        self.probe_delay = min(self.probe_delay * 2, PROBE_MAX_INTERVAL)
                        self.record_served()
            finally:
                self._probing.release()
            # a hold that began while this thread was ending found the lock taken
            if self._up.is_set() or self._stop.is_set():
                return
            if not self._probing.acquire(blocking=False):
                return

    def wait_to_retry(self, delay: float) -> bool:
        """Wait ``delay`` seconds, or less when another trigger succeeds first.

        Args:
            delay: the held request's backoff.

        Returns:
            True when the request should retry; False when the worker stopped.
        """
        deadline = time.monotonic() + delay
        while not self._up.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._stop.wait(min(WAKE_INTERVAL, remaining)):
                return False
        return not self._stop.is_set()
