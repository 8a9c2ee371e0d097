"""Countdown: an event record is done once every request its routes derived is answered.

The worker gives each derived request's answer a share of the record's completion: the
record's offset is marked done (``on_done``) when the last share is answered, or only its
in-flight slot is freed (``on_abandoned``) when any share was abandoned, so that the
partition's owner processes the whole event again (spec §8 Routes, §3 Delivery).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from consumer.record import InboundRecord

OnDone = Callable[[InboundRecord], None]


class Countdown:
    """Counts the answers of one record's derived requests; thread-safe."""

    def __init__(
        self, record: InboundRecord, shares: int, on_done: OnDone, on_abandoned: Callable[[], None]
    ) -> None:
        """Expect ``shares`` answers (zero: done at once).

        Args:
            record: the event record.
            shares: how many derived requests must be answered.
            on_done: called once with ``record`` when every share was answered.
            on_abandoned: called once instead when a share was abandoned.
        """
        self._record = record
        self._left = shares
        self._abandoned = False
        self._on_done = on_done
        self._on_abandoned = on_abandoned
        self._lock = threading.Lock()
        if shares == 0:
            on_done(record)

    def answered(self, _record: InboundRecord) -> None:
        """One derived request's answer was acknowledged."""
        self._finish(abandoned=False)

    def abandoned(self) -> None:
        """One derived request was abandoned (revoked partition, stopping worker)."""
        self._finish(abandoned=True)

    def _finish(self, *, abandoned: bool) -> None:
        with self._lock:
            self._left -= 1
            self._abandoned = self._abandoned or abandoned
            last, gave_up = self._left == 0, self._abandoned
        if not last:
            return
        if gave_up:
            self._on_abandoned()
        else:
            self._on_done(self._record)
