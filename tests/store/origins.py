"""Request origins for the store tests, and the check both stores' schema upgrades pass."""

from __future__ import annotations

from consumer.store import EntryStatus, IdempotencyStore, RequestOrigin
from consumer.trace import TraceContext

TRACE = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "acme=t61rcWkgMzE")
# the tracked entry 'k1' the old-schema fixtures insert: origin without route or trace
OLD_ORIGIN = RequestOrigin("requests", 2, 41, None, "corr-1", None)


def assert_upgrade_kept_old_origin_and_stores_route_and_trace(store: IdempotencyStore) -> None:
    """The old entry reads back without route or trace; a new one keeps both."""
    (tracked,) = store.tracked_runs()
    routed = RequestOrigin("events", 0, 7, None, route="orders", trace=TRACE)
    store.record(
        "k2",
        fingerprint="fp-2",
        dag_id="etl",
        dag_run_id="run-k2",
        status=EntryStatus.TRIGGERED,
        origin=routed,
    )
    written = store.get("k2")

    assert tracked.origin == OLD_ORIGIN
    assert written is not None and written.origin == routed
