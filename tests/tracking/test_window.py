"""Tests of consumer/tracking/window.py on the real Airflow: a listing reads what ended since."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.airflow import AirflowApi, EndedRuns
from consumer.store import IdempotencyStore, StoredEntry
from consumer.tracking.window import KEEP, LATE_END, LIST_OVERLAP, EndedRunWindow
from devstack.airflow import AirflowServer
from tests.tracking.tracked import RUN_TIMEOUT, entry, trigger_tracked
from tests.waiting import wait_until

DAG = "devstack_plain"


class ListingLog:
    """The real client, keeping each ``ended_runs`` call's start and answer (an observer)."""

    def __init__(self, client: AirflowApi) -> None:
        """Forward to ``client``; no call yet."""
        self.client = client
        self.calls: list[tuple[datetime, EndedRuns | None]] = []

    def ended_runs(self, dag_ids: Collection[str], since: datetime) -> EndedRuns | None:
        """List through the real client and keep what was asked and answered."""
        listing = self.client.ended_runs(dag_ids, since)
        self.calls.append((since, listing))
        return listing

    def __getattr__(self, name: str) -> Any:
        """Everything else is the real client's."""
        return getattr(self.client, name)

    def listed(self, index: int) -> set[str]:
        """The run ids the call at ``index`` listed."""
        listing = self.calls[index][1]
        return {run.dag_run_id for run in listing.runs} if listing else set()

    def cursor(self) -> datetime:
        """The latest end any call listed so far."""
        ends = [listing.latest_end for _, listing in self.calls if listing]
        return max(end for end in ends if end is not None)


class Clock:
    """UTC system time, moved forward on demand (to age the window past ``KEEP``)."""

    def __init__(self) -> None:
        """Start at the system time."""
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        """The system time plus how far the clock was moved."""
        return datetime.now(UTC) + self.ahead


def tracked(store: IdempotencyStore, client: AirflowApi) -> StoredEntry:
    """The stored entry of a new tracked run of ``DAG`` on the real Airflow."""
    key, _ = trigger_tracked(store, client, DAG)
    return entry(store, key)


def wait_ended(window: EndedRunWindow, entries: list[StoredEntry]) -> None:
    """Ask the window until every entry's run is known ended."""
    wait_until(
        lambda: set(window.ended(entries) or {}) == {e.key for e in entries},
        timeout=RUN_TIMEOUT,
        interval=0.5,
        what="runs ended",
    )


def test_after_the_first_listing_each_starts_just_before_the_latest_end_seen(
    airflow: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """The first listing reaches back to the run's creation; the next, to the latest end only."""
    log = ListingLog(client_for(airflow))
    window = EndedRunWindow(log, Clock())  # type: ignore[arg-type]  # the observed real client
    first = tracked(store, log.client)

    wait_ended(window, [first])
    cursor = log.cursor()
    found = window.ended([first])

    assert found is not None and first.key in found
    assert log.calls[0][0] == first.created_at - LIST_OVERLAP
    assert log.calls[-1][0] == cursor - LATE_END
    assert log.calls[-1][0] > first.created_at - LIST_OVERLAP


def test_a_run_listed_before_its_entry_was_looked_at_is_known_without_listing_it_again(
    airflow3: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """A run that ended while the window watched its DAG is found later, not listed again."""
    log = ListingLog(client_for(airflow3))
    window = EndedRunWindow(log, Clock())  # type: ignore[arg-type]
    first, later = tracked(store, log.client), tracked(store, log.client)
    wait_ended(window, [first])
    appeared = next(i for i in range(len(log.calls)) if later.dag_run_id in log.listed(i))
    passed = log.calls[appeared][1].latest_end  # type: ignore[union-attr]  # it listed a run
    fresh = [first]

    def past_its_end() -> bool:  # new runs end, so the listings start after ``later``'s end
        fresh.append(tracked(store, log.client))
        window.ended(fresh)
        return log.calls[-1][0] > passed

    wait_until(past_its_end, timeout=RUN_TIMEOUT, interval=1.0, what="listings past its end")
    found = window.ended([later])

    assert found is not None
    assert found[later.key].state == "success"
    assert later.dag_run_id not in log.listed(-1)


def test_a_run_created_before_the_window_opened_makes_it_reach_back_to_its_creation(
    airflow3: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """An entry older than the window (taken over, say) is listed from its creation."""
    log = ListingLog(client_for(airflow3))
    window = EndedRunWindow(log, Clock())  # type: ignore[arg-type]
    fresh = tracked(store, log.client)
    window.ended([fresh])
    old = replace(tracked(store, log.client), created_at=fresh.created_at - timedelta(hours=1))

    window.ended([fresh, old])

    assert log.calls[-1][0] == old.created_at - LIST_OVERLAP


def test_an_idle_poll_closes_the_window_and_the_next_opens_it_from_the_creation(
    airflow3: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """No tracked runs: nothing is listed; the next run is listed from its own creation."""
    log = ListingLog(client_for(airflow3))
    window = EndedRunWindow(log, Clock())  # type: ignore[arg-type]
    first = tracked(store, log.client)
    wait_ended(window, [first])
    calls = len(log.calls)

    assert window.ended([]) == {}
    assert len(log.calls) == calls
    second = tracked(store, log.client)
    window.ended([second])
    assert log.calls[-1][0] == second.created_at - LIST_OVERLAP


def test_runs_listed_longer_ago_than_keep_are_forgotten_and_listed_again(
    airflow3: AirflowServer, store: IdempotencyStore, client_for: Callable[..., AirflowApi]
) -> None:
    """Past ``KEEP`` the window no longer vouches for an entry: it reaches back and finds it."""
    log = ListingLog(client_for(airflow3))
    clock = Clock()
    window = EndedRunWindow(log, clock)  # type: ignore[arg-type]
    first = tracked(store, log.client)
    wait_ended(window, [first])

    clock.ahead = KEEP + timedelta(minutes=1)
    found = window.ended([first])

    assert found is not None and first.key in found
    assert log.calls[-1][0] == first.created_at - LIST_OVERLAP
    assert first.dag_run_id in log.listed(-1)
