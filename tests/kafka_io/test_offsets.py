"""Tests of consumer/kafka_io/offsets.py: the pure OffsetTracker, by example and by property."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.kafka_io.offsets import OffsetTracker, Partition

P0 = Partition("requests", 0)
P1 = Partition("requests", 1)


def start_all(tracker: OffsetTracker, partition: Partition, offsets: list[int]) -> None:
    """Start every offset of ``offsets`` on ``partition``, in order."""
    for offset in offsets:
        tracker.started(partition, offset)


def test_nothing_is_committable_before_any_work_is_done() -> None:
    """Started but unfinished offsets give nothing to commit."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [0, 1, 2])

    assert tracker.committable() == {}
    assert tracker.in_flight() == 3


def test_in_order_completion_commits_after_the_last_done_offset() -> None:
    """Done offsets in fetch order make the next offset to read committable."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [0, 1, 2])

    tracker.done(P0, 0)
    tracker.done(P0, 1)

    assert tracker.committable() == {P0: 2}
    assert tracker.in_flight() == 1


def test_out_of_order_completion_waits_for_the_missing_prefix() -> None:
    """An undone offset holds back the commit of the done offsets after it."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [10, 11, 12, 13])

    tracker.done(P0, 12)
    tracker.done(P0, 13)
    assert tracker.committable() == {}

    tracker.done(P0, 10)
    assert tracker.committable() == {P0: 11}

    tracker.done(P0, 11)
    assert tracker.committable() == {P0: 14}
    assert tracker.in_flight() == 0


def test_gaps_between_started_offsets_do_not_block() -> None:
    """Offsets never started (compaction, transaction markers) are skipped over."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [5, 9, 20])

    tracker.done(P0, 9)
    tracker.done(P0, 5)
    assert tracker.committable() == {P0: 10}

    tracker.done(P0, 20)
    assert tracker.committable() == {P0: 21}


def test_committable_lists_only_partitions_that_advanced_since_the_last_commit() -> None:
    """After committed(), a partition reappears only once its watermark moves on."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [0, 1])
    start_all(tracker, P1, [0])
    tracker.done(P0, 0)
    tracker.done(P1, 0)

    tracker.committed({P0: 1, P1: 1})
    assert tracker.committable() == {}

    tracker.done(P0, 1)
    assert tracker.committable() == {P0: 2}


def test_a_commit_of_part_of_the_progress_leaves_the_rest_committable() -> None:
    """A commit older than the current watermark leaves the partition committable."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [0, 1])
    tracker.done(P0, 0)
    offsets = tracker.committable()
    tracker.done(P0, 1)

    tracker.committed(offsets)

    assert tracker.committable() == {P0: 2}


def test_partitions_are_independent() -> None:
    """Progress on one partition neither needs nor blocks progress on another."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [0, 1])
    start_all(tracker, P1, [7])

    tracker.done(P1, 7)

    assert tracker.committable() == {P1: 8}
    assert tracker.in_flight(P0) == 2
    assert tracker.in_flight(P1) == 0


def test_revoke_forgets_a_partition_and_ignores_its_late_completions() -> None:
    """After revoke, the partition is never committable and late done() calls are ignored."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [0, 1, 2])
    start_all(tracker, P1, [0])
    tracker.done(P0, 0)

    tracker.revoke([P0])

    assert tracker.done(P0, 1) is False
    assert tracker.committable() == {}
    assert tracker.in_flight() == 1
    assert tracker.partitions() == frozenset({P1})
    tracker.committed({P0: 3})
    assert tracker.partitions() == frozenset({P1})


def test_reassigned_partition_starts_clean() -> None:
    """A partition assigned again after revoke may restart from an earlier offset."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [0, 1, 2])
    tracker.revoke([P0])

    start_all(tracker, P0, [1, 2])
    tracker.done(P0, 1)

    assert tracker.committable() == {P0: 2}
    assert tracker.in_flight() == 1


def test_unknown_and_repeated_done_calls_change_nothing() -> None:
    """done() for offsets never started, or already done, returns False and counts nothing."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [3, 5])

    assert tracker.done(P1, 3) is False
    assert tracker.done(P0, 4) is False
    assert tracker.done(P0, 3) is True
    assert tracker.done(P0, 3) is False
    assert tracker.done(P0, 99) is False
    assert tracker.in_flight() == 1
    assert tracker.committable() == {P0: 4}


def test_started_offsets_must_increase() -> None:
    """Starting an offset at or below the last started one is refused."""
    tracker = OffsetTracker()
    start_all(tracker, P0, [4, 5])

    with pytest.raises(ValueError, match="must increase"):
        tracker.started(P0, 5)
    with pytest.raises(ValueError, match="must increase"):
        tracker.started(P0, 1)


def test_partition_is_compatible_with_kafka_topic_partition() -> None:
    """Partition has kafka-python TopicPartition's fields, so one converts to the other."""
    from kafka import TopicPartition  # noqa: PLC0415 -- only this test touches kafka

    kafka_tp = TopicPartition("requests", 3)

    assert Partition(*kafka_tp) == Partition("requests", 3)
    assert TopicPartition(*Partition("requests", 3)) == kafka_tp


def test_concurrent_done_calls_from_many_threads_are_all_counted() -> None:
    """Sixteen threads finishing interleaved offsets leave every offset committed once."""
    tracker = OffsetTracker()
    threads_count, per_thread = 16, 500
    total = threads_count * per_thread
    start_all(tracker, P0, list(range(total)))
    barrier = threading.Barrier(threads_count)

    def finish(index: int) -> None:
        barrier.wait(timeout=10)
        for offset in range(index, total, threads_count):
            tracker.done(P0, offset)

    threads = [threading.Thread(target=finish, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert tracker.in_flight() == 0
    assert tracker.committable() == {P0: total}


@st.composite
def runs_and_completions(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Increasing offsets with random gaps, and a random order in which they finish."""
    gaps = draw(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60))
    first = draw(st.integers(min_value=0, max_value=1_000))
    offsets: list[int] = []
    current = first
    for gap in gaps:
        offsets.append(current)
        current += gap
    order = draw(st.permutations(offsets))
    return offsets, list(order)


@given(runs_and_completions())
def test_committable_never_passes_an_undone_offset(case: tuple[list[int], list[int]]) -> None:
    """For any completion order, every started offset below the committable one is done."""
    offsets, order = case
    tracker = OffsetTracker()
    start_all(tracker, P0, offsets)
    finished: set[int] = set()

    for offset in order:
        tracker.done(P0, offset)
        finished.add(offset)
        commit = tracker.committable().get(P0)
        undone = [o for o in offsets if o not in finished]
        if commit is None:
            assert offsets[0] not in finished
        else:
            assert all(o in finished for o in offsets if o < commit)
            # and it is the furthest such offset: the next started one is undone
            assert not undone or min(undone) >= commit
            assert commit - 1 in finished

    assert tracker.committable() == {P0: offsets[-1] + 1}
    assert tracker.in_flight() == 0


@given(runs_and_completions(), st.data())
def test_commits_between_completions_never_go_backwards(
    case: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    """Committing whatever is committable at random moments yields increasing commits to the end."""
    offsets, order = case
    tracker = OffsetTracker()
    start_all(tracker, P0, offsets)
    commits: list[int] = []

    for offset in order:
        tracker.done(P0, offset)
        if data.draw(st.booleans()):
            ready = tracker.committable()
            if ready:
                commits.append(ready[P0])
                tracker.committed(ready)

    final = tracker.committable()
    if final:
        commits.append(final[P0])
        tracker.committed(final)

    assert commits == sorted(set(commits))
    assert commits[-1] == offsets[-1] + 1
    assert tracker.committable() == {}


def test_an_idle_partition_commits_up_to_the_fetch_position() -> None:
    """With nothing in flight, offsets up to the position (markers, aborted records) commit."""
    tracker = OffsetTracker()
    p = Partition("t", 0)
    tracker.started(p, 5)
    tracker.skip_to({p: 9})
    assert tracker.committable() == {}  # offset 5 is still in flight: nothing moves
    tracker.done(p, 5)
    tracker.skip_to({p: 9})
    assert tracker.committable() == {p: 9}


def test_a_partition_never_read_commits_only_once_its_position_moves() -> None:
    """Position 0 and nothing read: no commit; markers alone moved it on: that position."""
    tracker = OffsetTracker()
    p = Partition("t", 1)
    tracker.skip_to({p: 0})
    assert tracker.committable() == {}
    tracker.skip_to({p: 3})  # an aborted transaction and its marker, nothing to answer
    assert tracker.committable() == {p: 3}
