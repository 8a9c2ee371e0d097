"""``resume_pending`` on both stores: a new owner of a record stamps its pending mark."""

from __future__ import annotations

from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin
from tests.store.stores import ManualClock, trigger

AT = ("requests", 4, 68)


def _mark(store: IdempotencyStore, key: str, offset: int = 68) -> None:
    origin = RequestOrigin("requests", 4, offset, None)
    store.mark_pending(
        key, fingerprint="fp-1", dag_id="etl", dag_run_id=f"run-{key}", origin=origin
    )


def test_a_stamp_changes_the_marks_updated_at_and_nothing_else(
    store: IdempotencyStore, clock: ManualClock
) -> None:
    """Even at the very instant the mark was written (clocks agree): the stamp is later."""
    _mark(store, "k1")
    written = store.get("k1")

    stamped = store.resume_pending("k1", AT)

    assert written is not None and stamped is not None
    assert stamped.updated_at > written.updated_at
    assert stamped == store.get("k1")
    assert (stamped.status, stamped.created_at, stamped.origin) == (
        EntryStatus.PENDING,
        written.created_at,
        written.origin,
    )


def test_only_a_live_pending_mark_of_the_same_record_is_stamped(store: IdempotencyStore) -> None:
    """Another record's mark, a recorded run and an unknown key: nothing to resume."""
    _mark(store, "other", offset=69)
    trigger(store, "done")

    assert store.resume_pending("other", AT) is None
    assert store.resume_pending("done", AT) is None
    assert store.resume_pending("unknown", AT) is None
    assert store.get("unknown") is None
