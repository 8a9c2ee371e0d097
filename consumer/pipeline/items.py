"""What triage hands on: a request admitted for Airflow, an event's items, and the callbacks.

``Pipeline.triage`` answers what needs no Airflow call and admits the rest; the worker
queues admitted requests per key and ``Pipeline.execute`` (or the flow releaser) runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consumer.contract import TriggerRequest
from consumer.outcome import Outcome
from consumer.record import InboundRecord
from consumer.store import StoredEntry


@dataclass(frozen=True)
class Admitted:
    """A request that needs Airflow, or a store look-up after its key's earlier requests.

    Attributes:
        record: the request record.
        request: the valid, allowed request.
        fingerprint: the request's fingerprint, computed once.
        entry: the key's store entry as triage read it (None: unknown).
        current: whether ``entry`` is still true when ``execute`` runs; False when an
            earlier request of the key was in flight (or the read failed), so ``execute``
            reads the store again.
    """

    record: InboundRecord
    request: TriggerRequest
    fingerprint: str
    entry: StoredEntry | None
    current: bool


@dataclass(frozen=True)
class Fanout:
    """The items of one event record: one per request its routes derived (maybe none).

    Its offset is done once every item is answered; none: an ignored unmatched event.

    Attributes:
        items: the derived requests' items.
        records: each item's record (the event as its route read it), in the same order.
    """

    items: tuple[Outcome | Admitted, ...]
    records: tuple[InboundRecord, ...]


Busy = Callable[[str], bool]
"""Tells whether a key has an admitted request still queued or running."""
Owned = Callable[[], bool]
"""Tells whether this worker still owns the partition of the request being executed."""
