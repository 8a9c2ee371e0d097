"""The idempotency store: idempotency key → fingerprint → outcome (spec §3, layer 1).

``IdempotencyStore`` (``protocol``) is the seam the pipeline and the tracker use; its
values live in ``entry``; ``open_store`` (``opening``) picks an implementation from
``TRIGGER_CONSUMER_STORE_URL``: embedded SQLite for one replica, or PostgreSQL shared by a
fleet of replicas (spec §8). This module only re-exports them.

The life of one key::

    mark_pending ──► pending ──► record(triggered | duplicate) ──► mark_completed (track only)
                        │                                     └──► abandon_tracking (horizon)
                        └──────► release   (the attempt certainly created no run;
                                            its record's refusal is remembered beyond it)

A ``rerun`` request (issue 29) keeps one mark per key and re-run id beside the key's entry,
forgotten with it (release, expiry, purge)::

    mark_rerun ──► pending ──► record_rerun ──► done   (with track: the run is tracked again)

Flow control (issue 30, ``DeferralStore``) parks requests beside the entries, never purged
by retention; the one replica holding the flow lease releases them::

    defer ──► waiting ──► due_deferred (due_at passed, or release_deferred) ──► forget_deferred
"""

from __future__ import annotations

from consumer.store.deferral_protocol import DeferralStore
from consumer.store.deferred import DeferralReason, DeferredCount, DeferredRequest
from consumer.store.entry import (
    Coordinates,
    EntryStatus,
    RememberedRefusal,
    RequestOrigin,
    RerunMark,
    RerunStatus,
    StoredEntry,
    coordinates,
)
from consumer.store.opening import POSTGRES_SCHEMES, SQLITE_SCHEME, open_store
from consumer.store.protocol import DEFAULT_PURGE_BATCH, Clock, IdempotencyStore

__all__ = [
    "DEFAULT_PURGE_BATCH",
    "POSTGRES_SCHEMES",
    "SQLITE_SCHEME",
    "Clock",
    "Coordinates",
    "DeferralReason",
    "DeferralStore",
    "DeferredCount",
    "DeferredRequest",
    "EntryStatus",
    "IdempotencyStore",
    "RememberedRefusal",
    "RequestOrigin",
    "RerunMark",
    "RerunStatus",
    "StoredEntry",
    "coordinates",
    "open_store",
]
