"""The window of ended runs: how completion tracking learns which runs ended, cheaply.

Tracking thousands of runs must not cost Airflow a call per run, nor a re-read of every run
that ended lately at each poll. So the tracker asks Airflow only what ended since its last
question (``AirflowApi.ended_runs``):

- Each listing starts ``LATE_END`` before the latest end the previous one saw. That end is
  on Airflow's own clock, so this host's clock plays no part; ``LATE_END`` takes in a run
  whose end was committed after a later one's. A listing costs what ended since, not what
  is tracked.
- What was listed is kept for ``KEEP``, so a run that ended while the window watched its
  DAG is known however late its entry is looked at (a run leased only later, a run that
  another replica held until it died). Such a run, listed by an earlier poll, is read
  once more (one GET) before it is reported: it may have been cleared since (a re-run,
  issue 29), and its ``completed`` reply must be for the end it has now.
- A run the window cannot vouch for (its DAG is new to the window, or it was created
  before the window opened) makes the window reach back to the run's creation, less
  ``LIST_OVERLAP`` for the clock skew between this host, the replica that made the run and
  Airflow: one larger listing at start-up, for a new DAG, or for runs taken over.

A poll with no tracked runs closes the window, so an idle tracker lists nothing and a
new run re-opens it from that run's creation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from consumer.airflow import AirflowApi, DagRun
from consumer.airflow.client import ENDED_STATES
from consumer.store import Clock, StoredEntry

# how long listed runs are kept: a run leased up to KEEP - LIST_OVERLAP after it ended is known
KEEP = timedelta(minutes=10)
# how far a listing reaches before a run's creation: clock skew between hosts and Airflow
LIST_OVERLAP = timedelta(minutes=5)
# how far a listing reaches before the latest end already seen: ends committed out of order
LATE_END = timedelta(seconds=10)


class EndedRunWindow:
    """The runs of the tracked DAGs that ended lately, as Airflow listed them.

    Used by one thread (the tracker's).
    """

    def __init__(self, airflow: AirflowApi, clock: Clock) -> None:
        """Open nothing yet: the first ``ended`` call lists from its runs' creation.

        Args:
            airflow: the client whose ``ended_runs`` lists ended runs.
            clock: the wall clock (UTC) that entries' ``created_at`` is compared with.
        """
        self._airflow = airflow
        self._clock = clock
        self._runs: dict[tuple[str, str], tuple[DagRun, datetime]] = {}  # run, when listed
        self._opened: dict[str, datetime] = {}  # per DAG: every run ended since is listed
        self._looked: dict[str, datetime] = {}  # per key: when it was last found not ended
        self._cursor: datetime | None = None  # the latest end listed, on Airflow's clock

    def ended(self, entries: Sequence[StoredEntry]) -> dict[str, DagRun] | None:
        """The runs of ``entries`` that ended, by idempotency key, after one listing.

        Args:
            entries: the tracked entries of this poll; none closes the window.

        Returns:
            The ended runs by key, or None when this Airflow has no list endpoint.

        Raises:
            AirflowError: the listing failed; nothing changed, so the next call covers it.
            ConfigError: credentials refused or TLS failure.
        """
        now = self._clock()
        if not entries:
            self._close()
            return {}
        self._forget(now)
        unvouched = [entry for entry in entries if not self._vouches(entry, now)]
        starts = [entry.created_at - LIST_OVERLAP for entry in unvouched]
        if self._cursor is not None:
            starts.append(self._cursor - LATE_END)
        since = min(starts or self._opened.values())
        dags = self._opened.keys() | {entry.dag_id for entry in unvouched}
        listing = self._airflow.ended_runs(dags, since)
        if listing is None:
            return None
        for run in listing.runs:  # the latest listing of a run wins (a re-run's new end)
            self._runs.pop((run.dag_id, run.dag_run_id), None)  # the dict stays in time order
            self._runs[(run.dag_id, run.dag_run_id)] = (run, now)
        for dag_id in dags:
            self._opened[dag_id] = min(self._opened.get(dag_id, since), since)
        if listing.latest_end is not None:
            self._cursor = max(listing.latest_end, self._cursor or listing.latest_end)
        found: dict[str, DagRun] = {}
        for entry in entries:
            ended = self._current(entry, now)
            if ended is None:
                self._looked.pop(entry.key, None)  # to the end: the dict stays in time order
                self._looked[entry.key] = now
            else:
                found[entry.key] = ended
        return found

    def _current(self, entry: StoredEntry, now: datetime) -> DagRun | None:
        """The entry's run if it ended: as listed now, or read again if listed earlier."""
        listed = self._runs.get((entry.dag_id, entry.dag_run_id))
        if listed is None or listed[1] == now:
            return None if listed is None else listed[0]
        run = self._airflow.get_run(entry.dag_id, entry.dag_run_id)  # cleared since?
        if run is not None and run.state in ENDED_STATES:
            return run
        del self._runs[(entry.dag_id, entry.dag_run_id)]  # a later listing will show its end
        return None

    def _vouches(self, entry: StoredEntry, now: datetime) -> bool:
        """Whether a run missing from the window surely has not ended."""
        opened = self._opened.get(entry.dag_id)
        if opened is None:
            return False
        looked = self._looked.get(entry.key)
        if looked is not None:
            return True  # not ended then, and watched since: its end would be kept (``_forget``)
        return entry.created_at - LIST_OVERLAP >= max(opened, now - KEEP)

    def _forget(self, now: datetime) -> None:
        """Drop runs listed over ``KEEP`` ago, and looks that could no longer vouch for a key.

        Both dicts are in the order of their times, so the old ones are at the front.
        """
        while self._runs and next(iter(self._runs.values()))[1] < now - KEEP:
            del self._runs[next(iter(self._runs))]
        while self._looked and next(iter(self._looked.values())) < now - (KEEP - LIST_OVERLAP):
            del self._looked[next(iter(self._looked))]

    def _close(self) -> None:
        self._runs.clear()
        self._opened.clear()
        self._looked.clear()
        self._cursor = None
