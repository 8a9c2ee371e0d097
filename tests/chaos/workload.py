"""Workload: a seeded stream of mixed trigger traffic, planned as batches for real producers.

Every record carries a ``chaos-kind`` header naming what it is meant to be (a new key, an
exact duplicate, a key reused with another body...), so the checker reads the intent from
the Kafka log itself, not from this module's memory. Keys start with the trial's token, so
the runs a trial made are found in Airflow by that token alone.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

KIND_HEADER = "chaos-kind"
DAG = "devstack_paused"  # runs are created, never executed: cheap for the shared scheduler
TRACKED_DAG = "devstack_plain"  # runs that succeed within seconds
FAILING_DAG = "devstack_fails"  # runs that end `failed`
MISSING_DAG = "devstack_missing"  # allowed by `devstack_*`, unknown to Airflow
CODECS = ("gzip", "snappy", "lz4", "zstd")

# what one record is meant to be (its chaos-kind header)
NEW = "new"  # a new key
DUPLICATE = "duplicate"  # an exact copy of an earlier request
REUSED = "reused"  # an earlier key with another body: rejected, triggers nothing
INVALID = "invalid"  # unreadable or breaking the contract: rejected
TOMBSTONE = "tombstone"  # no key, no value
ROUTE = "route"  # an event that two routes turn into two requests
TRACKED = "tracked"  # a new key with `track: true`
FAILS = "fails"  # a tracked request for a DAG whose runs fail
MISSING = "missing"  # an allowed DAG that does not exist: Airflow answers 404, no run
# batch producers
PLAIN = "plain"  # kafka-python, uncompressed, not transactional
COMPRESSED = "compressed"  # librdkafka with a codec
TRANSACTION = "transaction"  # librdkafka transaction, committed
ABORTED = "aborted"  # librdkafka transaction, aborted: triggers nothing

RECORD_KINDS = (NEW, DUPLICATE, REUSED, INVALID, TOMBSTONE, ROUTE, TRACKED, FAILS, MISSING)
BATCH_KINDS = (PLAIN, COMPRESSED, TRANSACTION, ABORTED)
TRAFFIC_KINDS = RECORD_KINDS + BATCH_KINDS[1:]
RECORD_WEIGHTS = {
    NEW: 30,
    DUPLICATE: 14,
    REUSED: 6,
    INVALID: 8,
    TOMBSTONE: 3,
    ROUTE: 10,
    TRACKED: 5,
    FAILS: 3,
    MISSING: 3,
}
BATCH_WEIGHTS = {PLAIN: 70, COMPRESSED: 12, TRANSACTION: 10, ABORTED: 8}
MAX_BATCHES = 100_000  # a bound on the stream; a trial stops it long before


@dataclass(frozen=True)
class Planned:
    """One record to produce: ``events`` says it goes to the route topic."""

    key: bytes | None
    value: bytes | None
    kind: str
    events: bool = False

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The record's headers: its intended kind."""
        return [(KIND_HEADER, self.kind.encode())]


@dataclass(frozen=True)
class Batch:
    """Records one producer writes together: plain, compressed (``codec``) or a transaction."""

    producer: str
    records: tuple[Planned, ...]
    codec: str | None = None


def _invalid_values(key: str) -> list[bytes]:
    """Messages that break the contract in different ways, for one unique key."""
    return [
        b"{not json",
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        json.dumps({"idempotency_key": key, "dag_id": DAG, "dagid": "typo"}).encode(),
        json.dumps({"idempotency_key": key, "dag_id": "not_allowed_dag"}).encode(),
        json.dumps({"idempotency_key": key, "dag_id": DAG, "schema_version": 99}).encode(),
    ]


@dataclass
class Workload:
    """A seeded generator of batches; ``kinds`` limits the traffic to those kinds.

    Attributes:
        seed: the stream's seed; the same seed gives the same stream of kinds and bodies.
        token: the trial's unique prefix of every key and route name.
        kinds: the traffic kinds allowed (``TRAFFIC_KINDS`` by default); new keys always are.
    """

    seed: int
    token: str
    kinds: frozenset[str] = frozenset(TRAFFIC_KINDS)
    _made: list[tuple[str, bytes]] = field(default_factory=list)  # sent (key, value) requests
    _events: list[tuple[str, bytes]] = field(default_factory=list)  # (event id, value)
    _counter: int = 0

    def __post_init__(self) -> None:
        """Seed the generator."""
        self._rng = random.Random(self.seed)  # noqa: S311 -- a test schedule, not cryptography

    @property
    def routes(self) -> tuple[str, str]:
        """The names of the two routes every event fans out to."""
        return (f"{self.token}-first", f"{self.token}-second")

    def route_table(self, topic: str) -> list[dict[str, object]]:
        """The worker's ``ROUTES``: two routes that both take every order event of ``topic``."""
        return [
            {
                "name": name,
                "topics": [topic],
                "match": "kind == 'order'",
                "dag_id": DAG,
                "idempotency_key": "{id}",
                "conf": {"id": "id", "route": f"'{name}'"},
            }
            for name in self.routes
        ]

    def batches(self, limit: int = MAX_BATCHES) -> Iterator[Batch]:
        """The stream's first ``limit`` batches (the caller usually stops sooner)."""
        for _ in range(limit):
            yield self.next_batch()

    def spawn_rng(self, purpose: str) -> random.Random:
        """A generator of its own for ``purpose`` (pacing...), seeded from the workload's seed."""
        return random.Random(f"{self.seed}-{purpose}")  # noqa: S311 -- not cryptography

    def next_batch(self) -> Batch:
        """The next batch of the stream."""
        allowed = {k: w for k, w in BATCH_WEIGHTS.items() if k == PLAIN or k in self.kinds}
        producer = self._pick(allowed)
        size = self._rng.randint(1, 6)
        if producer == PLAIN:
            return Batch(PLAIN, tuple(self._record() for _ in range(size)))
        if producer == ABORTED:
            records = tuple(self._new(ABORTED, remember=False) for _ in range(size))
            return Batch(ABORTED, records)
        records = tuple(
            self._duplicate() if self._made and self._rng.random() < 0.25 else self._new(producer)
            for _ in range(size)
        )
        codec = self._rng.choice(CODECS) if producer == COMPRESSED else None
        return Batch(producer, records, codec)

    def _pick(self, weights: dict[str, int]) -> str:
        names = sorted(weights)
        return self._rng.choices(names, weights=[weights[n] for n in names])[0]

    def _next_id(self, letter: str) -> str:
        self._counter += 1
        return f"{self.token}-{letter}{self._counter}"

    def _record(self) -> Planned:
        allowed = {k: w for k, w in RECORD_WEIGHTS.items() if k == NEW or k in self.kinds}
        kind = self._pick(allowed)
        if kind in (DUPLICATE, REUSED) and not self._made:
            kind = NEW
        if kind == DUPLICATE:
            return self._duplicate()
        if kind == REUSED:
            key, value = self._rng.choice(self._made)
            body = json.loads(value)
            body["conf"] = {**body.get("conf", {}), "reused": self._next_id("u")}
            return Planned(key.encode(), json.dumps(body).encode(), REUSED)
        if kind == INVALID:
            key = self._next_id("x")
            return Planned(key.encode(), self._rng.choice(_invalid_values(key)), INVALID)
        if kind == TOMBSTONE:
            return Planned(None, None, TOMBSTONE)
        if kind == ROUTE:
            return self._event()
        return self._new(kind)

    def _new(self, kind: str, *, remember: bool = True) -> Planned:
        letter = {ABORTED: "a", TRACKED: "t", FAILS: "f", MISSING: "m"}.get(kind, "n")
        key = self._next_id(letter)
        body: dict[str, object] = {"idempotency_key": key, "dag_id": DAG, "conf": {"id": key}}
        if kind == TRACKED:
            body.update(dag_id=TRACKED_DAG, track=True)
        elif kind == FAILS:
            body.update(dag_id=FAILING_DAG, track=True)
        elif kind == MISSING:
            body.update(dag_id=MISSING_DAG)
        value = json.dumps(body).encode()
        if remember:
            self._made.append((key, value))
        return Planned(key.encode(), value, kind)

    def _duplicate(self) -> Planned:
        key, value = self._rng.choice(self._made)
        return Planned(key.encode(), value, DUPLICATE)

    def _event(self) -> Planned:
        # keyed by the event id: a re-sent event lands on the partition of the first one
        if self._events and self._rng.random() < 0.2:  # a re-sent event: duplicates per route
            event_id, value = self._rng.choice(self._events)
            return Planned(event_id.encode(), value, ROUTE, events=True)
        event_id = self._next_id("e")
        value = json.dumps({"kind": "order", "id": event_id}).encode()
        self._events.append((event_id, value))
        return Planned(event_id.encode(), value, ROUTE, events=True)
