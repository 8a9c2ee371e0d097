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


def test_an_old_ack_racing_an_offset_reset_never_commits_the_new_record(
    source: Source,
) -> None:
    """An ack passing owned() just before an offset reset marks only its own record done.

    On the producer's I/O thread the old record at offset 5 is acked: owned() is still True.
    Before offsets.done(P0, 5) runs, the loop thread polls a *different* record at offset 5
    (the topic was re-created, or a revoke + re-assign re-fetches from the committed offset)
    and the offset reset starts a fresh partition state with 5 in it. The old ack then marks
    the new, unanswered record done: it is committed before it is answered (lost on a crash).
    """
    checkpoint2 = Checkpoint(source, max_in_flight=8, metrics=Metrics())
    checkpoint2.assigned([P0])
    old5 = checkpoint2.ticket(record(5))
    real_done2 = checkpoint2.offsets.done

    def interleaved(partition: Partition, offset: int, generation: object = None) -> bool:
        checkpoint2.ticket(record(5))  # offset reset: a new record at 5, new epoch, unanswered
        return real_done2(partition, offset, generation)

    checkpoint2.offsets.done = interleaved  # type: ignore[method-assign]
    old5.done()  # the old record's answer was acked
    checkpoint2.offsets.done = real_done2  # type: ignore[method-assign]

    source.position = {P0: 6}
    checkpoint2.commit()
    assert source.commits == [], (
        f"committed {source.commits}: the new record at offset 5 was never answered"
    )


def test_wait_idle_returns_once_every_ticket_ended(checkpoint: Checkpoint) -> None:
    """A drain waits for the last ticket to end; with one left open it times out."""
    first, second = checkpoint.ticket(record(0)), checkpoint.ticket(record(1))
    first.done()
    assert not checkpoint.wait_idle(timeout=0.05)
    ender = threading.Timer(0.05, second.abandon)
    ender.start()
    assert checkpoint.wait_idle(timeout=10)
    ender.join()


def test_a_stale_position_during_a_rebalance_never_commits_past_unanswered_records(
    checkpoint: Checkpoint, source: Source
) -> None:
    """Revoked mid-work, the consumer still reports its old position until the rejoin ends.

    Found by the nemesis (seed 101): a commit between the revoke and the next assignment
    skipped the revoked partition to its stale position (25) past 22 unanswered records;
    the commit failed during the rebalance, but the skip stayed, and the first commit after
    the assignment committed it: offsets 3-24 were never answered.
    """
    for offset in range(3, 25):
        checkpoint.ticket(record(offset))
    source.position = {P0: 25}
    checkpoint.revoked([P0])
    checkpoint.commit()  # still rebalancing: the consumer reports the old position
    source.position = {}  # assigned again: the position is unknown until it is fetched
    checkpoint.assigned([P0])
    checkpoint.commit()
    source.position = {P0: 3}  # the committed offset, read back
    checkpoint.commit()
    assert all(offsets[P0] <= 3 for offsets in source.commits), source.commits
