"""What ``record`` keeps of the entry it overwrites: the pure rules both stores' SQL mirror.

A key's entry is written by requests (``mark_pending``, ``record``) and by the tracker of
its run (``lease_tracked``, ``mark_completed``, ``abandon_tracking``). A request recorded
twice (re-delivered after a rebalance, the first attempt's record already done and its run
already completed) must not hand the run back to the tracker: completion belongs to the
run, not to the request's second attempt::

    record(status, run) over a live entry
      ├─ may_overwrite refuses ──────────────► entry unchanged (another request's)
      ├─ the same run, already recorded ─────► request fields replaced; RUN_TRACKING,
      │                                         the completed run's state and a
      │                                         ``triggered`` status kept (kept_for_run)
      └─ otherwise ───────────────────────────► every field replaced, tracking empty
"""

from __future__ import annotations

from consumer.store.entry import EntryStatus, RequestOrigin, StoredEntry, coordinates

RUN_TRACKING = ("completed_at", "abandoned_at", "lease_owner", "lease_until", "leased_at")
"""The columns that follow the run once recorded; only the tracker writes them."""


def may_overwrite(existing: StoredEntry, status: EntryStatus, origin: RequestOrigin | None) -> bool:
    """Whether ``record(status, origin)`` may replace the live ``existing`` entry.

    The request that made the run (``triggered``) always writes. A ``duplicate`` never
    replaces what another request wrote, neither its pending mark (it may have made the
    run, and its re-delivery must still be answered ``triggered``) nor its final outcome.
    An unknown origin on either side (entries of store schema 1) matches any.

    Args:
        existing: the key's live entry.
        status: the status being recorded.
        origin: the recording request's origin.

    Returns:
        True when the entry may be overwritten.
    """
    if status is EntryStatus.TRIGGERED or existing.origin is None or origin is None:
        return True
    return coordinates(existing.origin) == coordinates(origin)


def records_run(existing: StoredEntry, dag_run_id: str) -> bool:
    """Whether the live ``existing`` entry already records the final outcome of ``dag_run_id``.

    Args:
        existing: the key's live entry.
        dag_run_id: the run being recorded.

    Returns:
        True when a record of ``dag_run_id`` must keep the entry's ``RUN_TRACKING``.
    """
    return existing.status is not EntryStatus.PENDING and existing.dag_run_id == dag_run_id


def kept_for_run(
    existing: StoredEntry, status: EntryStatus, run_state: str | None
) -> tuple[EntryStatus, str | None]:
    """The status and run state a second record of the run ``existing`` records stores.

    ``triggered`` is never turned into ``duplicate`` (the request that made the run is
    answered ``triggered`` on re-delivery), and a completed run keeps the final state the
    tracker saw rather than the state a later call read on its way.

    Args:
        existing: the live entry, for which ``records_run`` holds.
        status: the status being recorded.
        run_state: the run state being recorded.

    Returns:
        The status and run state to store.
    """
    if existing.status is EntryStatus.TRIGGERED:
        status = EntryStatus.TRIGGERED
    if existing.completed_at is not None:
        run_state = existing.run_state
    return status, run_state
