"""Tests of consumer/checkpoint.py: tickets, the in-flight bound, epochs and commits (pure)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest
from kafka.errors import RebalanceInProgressError

from consumer.checkpoint import Checkpoint
from consumer.kafka_io.offsets import Partition
from consumer.metrics import Metrics
from consumer.record import InboundRecord

P0 = Partition("requests", 0)


class Source:
    """Fetch positions and commits kept in memory, as ``RequestSource`` would report them."""

    def __init__(self) -> None:
        """No position, nothing committed, commits succeed."""
        self.position: dict[Partition, int] = {}
        self.commits: list[dict[Partition, int]] = []
        self.refuse = False

    def positions(self) -> Mapping[Partition, int]:
        """The fetch positions."""
        return dict(self.position)

    def commit(self, offsets: dict[Partition, int]) -> None:
        """Record a commit, or refuse it as a rebalancing coordinator would."""
        if self.refuse:
            raise RebalanceInProgressError("rebalancing")
        self.commits.append(dict(offsets))


def record(offset: int, partition: int = 0) -> InboundRecord:
    """A request record at ``offset``."""
    return InboundRecord("requests", partition, offset, None, b"k", b"{}")


@pytest.fixture
def source() -> Source:
    """An in-memory commit target."""
    return Source()


@pytest.fixture
def checkpoint(source: Source) -> Checkpoint:
    """A checkpoint of four slots owning partition 0."""
    made = Checkpoint(source, max_in_flight=4, metrics=Metrics())
    made.assigned([P0])
    return made


def test_only_the_done_prefix_is_committed_and_each_ticket_frees_its_slot_once(
    checkpoint: Checkpoint, source: Source
) -> None:
    """Offsets 0-2 fetched; 0 and 2 done (2 twice): the commit covers 0 only, two slots free."""
    tickets = [checkpoint.ticket(record(n)) for n in range(3)]
    assert checkpoint.in_flight() == 3
    tickets[0].done()
    tickets[2].done()
    tickets[2].done()
    tickets[2].abandon()
    checkpoint.commit()
    assert source.commits == [{P0: 1}]
    assert checkpoint.in_flight() == 1
    tickets[1].done()
    checkpoint.commit()
    assert source.commits[-1] == {P0: 3}


def test_an_abandoned_ticket_frees_its_slot_but_blocks_its_offset(
    checkpoint: Checkpoint, source: Source
) -> None:
    """Abandoned work is left for the partition's owner: nothing past it commits."""
    first, second = checkpoint.ticket(record(0)), checkpoint.ticket(record(1))
    first.abandon()
    second.done()
    checkpoint.commit()
    assert source.commits == []
    assert checkpoint.in_flight() == 0


def test_a_revoked_partitions_tickets_are_not_owned_and_commit_nothing(
    checkpoint: Checkpoint, source: Source
) -> None:
    """After a revoke and a new assignment, work fetched before is disowned."""
    old = checkpoint.ticket(record(0))
    checkpoint.revoked([P0])
    checkpoint.assigned([P0])
    assert not old.owned()
    old.done()
    new = checkpoint.ticket(record(0))
    assert new.owned()
    checkpoint.commit()
    assert source.commits == []
    assert checkpoint.in_flight() == 1


def test_split_shares_end_the_ticket_once_all_are_done_or_any_is_abandoned(
    checkpoint: Checkpoint, source: Source
) -> None:
    """A fanned-out event is done when every derived request is; abandoned if one is."""
    answered, dropped = checkpoint.ticket(record(0)), checkpoint.ticket(record(1))
    first, second, third = answered.split(3)
    first.done()
    second.done()
    assert checkpoint.in_flight() == 2
    third.done()
    one, two = dropped.split(2)
    one.abandon()
    two.done()
    checkpoint.commit()
    assert source.commits == [{P0: 1}]
    assert checkpoint.in_flight() == 0


def test_split_into_no_shares_is_done_at_once(checkpoint: Checkpoint, source: Source) -> None:
    """An event that derives nothing (ignored, a tombstone) is done when split."""
    assert checkpoint.ticket(record(0)).split(0) == []
    checkpoint.commit()
    assert source.commits == [{P0: 1}]


def test_a_failed_commit_is_counted_and_retried(checkpoint: Checkpoint, source: Source) -> None:
    """A refused commit leaves the offsets to the next commit."""
    checkpoint.ticket(record(0)).done()
    source.refuse = True
    checkpoint.commit()
    source.refuse = False
    checkpoint.commit()
    assert source.commits == [{P0: 1}]


def test_a_backwards_offset_starts_a_new_epoch(checkpoint: Checkpoint) -> None:
    """A position that moved back (a re-created topic) disowns the earlier tickets."""
    late = checkpoint.ticket(record(5))
    again = checkpoint.ticket(record(0))
    assert not late.owned()
    assert again.owned()


def test_a_full_checkpoint_waits_for_the_refill_mark(checkpoint: Checkpoint) -> None:
    """Four slots taken: ``wait_for_room`` returns once one is free (the mark of 3)."""
    tickets = [checkpoint.ticket(record(n)) for n in range(4)]
    assert checkpoint.full()
    assert checkpoint.room() == 1
    freer = threading.Timer(0.05, tickets[0].done)
    freer.start()
    checkpoint.wait_for_room(timeout=10)
    freer.join()
    assert not checkpoint.full()
    assert checkpoint.room() == 1
