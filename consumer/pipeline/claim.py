"""Hold a key for one request before its POST: its pending mark, written or resumed (spec §3).

::

    judged NEW ───► mark_pending ─► NEW (written here), or as the holder is judged
    judged RESUMED ► resume_pending ─► the mark stamped: its writer learns that this
                     process may make the run (``dedup.taken_over``); gone: judged again

Two owners of one record (a partition moved while its old owner was still at work) both
hold its mark, the writer and the resumer; either's POST may make the run and both answer
``triggered`` (nemesis seeds 1313, 1515). A resumer that cannot stamp (a read-only store)
holds before its POST, so the writer's look-up never misses a resumer that made the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.pipeline.dedup import Seen, claimed, judge
from consumer.run_id import run_id_for
from consumer.store import Coordinates, IdempotencyStore, RequestOrigin, StoredEntry
from consumer.store.holds import StoreHold

# the mark changed under each stamp (released, recorded): read and judged again this often
CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class KeyClaim:
    """What a request claims its key with: the store, its hold, and the request's facts."""

    store: IdempotencyStore
    hold: StoreHold
    key: str
    fingerprint: str
    dag_id: str
    at: Coordinates
    origin: RequestOrigin

    def take(self, entry: StoredEntry | None) -> tuple[StoredEntry | None, Seen]:
        """Write or stamp the key's pending mark, as ``entry`` (read before) calls for.

        Args:
            entry: the key's live entry as last read.

        Returns:
            The key's entry after the claim and how the request holds it: NEW (its mark),
            RESUMED (this record's mark, stamped), CLAIMED, or one of ``ANSWERED``.
        """
        seen = judge(entry, self.fingerprint, self.at)
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            if seen is Seen.NEW:
                entry = self.hold.call(self._mark, "mark_pending")
                seen = claimed(entry, self.fingerprint, self.at)
            if seen is not Seen.RESUMED:
                return entry, seen
            stamped = self.hold.call(self._stamp, "resume_pending")
            if stamped is not None or attempt == CLAIM_ATTEMPTS:
                break
            entry = self.hold.call(lambda: self.store.get(self.key), "read")
            seen = judge(entry, self.fingerprint, self.at)
        # unstamped only if the mark changed under every stamp: at worst its writer says duplicate
        return stamped or entry, seen

    def _mark(self) -> StoredEntry:
        return self.store.mark_pending(
            self.key,
            fingerprint=self.fingerprint,
            dag_id=self.dag_id,
            dag_run_id=run_id_for(self.key),
            origin=self.origin,
        )

    def _stamp(self) -> StoredEntry | None:
        return self.store.resume_pending(self.key, self.at)
