"""How many runs of a DAG wait queued in Airflow, read with Airflow's own API (issue 30).

``GET /dags/{dag_id}/dagRuns?state=queued&limit=1`` answers ``total_entries`` on both API
versions (``~`` for every DAG). A count is cached for ``MAX_AGE`` and raised by each run
the releaser makes meanwhile, so a DAG with work waiting costs about one call a second. A
count that cannot be read is unknown: nothing of that DAG is released until it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

from consumer.airflow.transport import Transport, read_json

MAX_AGE = 1.0  # seconds a count is trusted (plus the runs made since)
EVERY_DAG = "~"


class QueuedRuns:
    """Queued-run counts per DAG, cached (one instance per releaser; not thread-safe)."""

    def __init__(self, transport: Transport, clock: Callable[[], float] = time.monotonic) -> None:
        """Count through ``transport`` (authenticated, version-detecting)."""
        self._transport = transport
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}  # dag -> (count, read at)

    def count(self, dag_id: str = EVERY_DAG) -> int | None:
        """The DAG's queued runs (``~``: every DAG's), or None when Airflow did not say."""
        cached = self._counts.get(dag_id)
        if cached is not None and self._clock() - cached[1] < MAX_AGE:
            return cached[0]
        response = self._transport.get_once(
            f"/dags/{quote(dag_id, safe='~')}/dagRuns?state=queued&limit=1"
        )
        body = read_json(response) if response is not None and response.ok else None
        total = body.get("total_entries") if isinstance(body, dict) else None
        if not isinstance(total, int) or isinstance(total, bool):
            self._counts.pop(dag_id, None)
            return None
        self._counts[dag_id] = (total, self._clock())
        return total

    def made(self, dag_id: str) -> None:
        """A run of ``dag_id`` was just made: cached counts (its and every DAG's) grow by one."""
        for name in (dag_id, EVERY_DAG):
            if name in self._counts:
                count, read_at = self._counts[name]
                self._counts[name] = (count + 1, read_at)
