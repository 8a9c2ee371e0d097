"""``audit --repair``: re-drive the requests nothing will answer, through replay's path.

A request the group committed without a reply and without a run was lost (a reset
offset, a reply gone with its run): the worker never reads it again. Repair reads those
records again and hands them to ``consumer.replay.replay``, which copies each one, key,
value and headers, to the request topic with a ``replayed-from`` header; the worker then
answers the copy, and the next audit finds the original superseded by it.
"""

from __future__ import annotations

from collections.abc import Iterable

from consumer.audit.history import Place, Request
from consumer.kafka_io.reader import open_reader, read_records
from consumer.kafka_io.writer import RecordWriter
from consumer.replay import Filters, OffsetRange, Window, replay
from consumer.replay_destinations import Destinations
from consumer.replay_tally import Tally
from consumer.settings import Settings


def repair(settings: Settings, requests: Iterable[Request]) -> Tally:
    """Re-drive ``requests`` to the request topic and wait for the broker's acks.

    Args:
        settings: the worker's settings.
        requests: requests of the request topic (``Report.repairable``).

    Returns:
        replay's tally; ``replayed_by_topic`` counts what the broker acknowledged.

    Raises:
        ReplayStalledError: the request topic stopped giving records.
        ReplayWriteError: the broker did not acknowledge a copy.
        KafkaError: the broker failed.
    """
    topic = settings.request_topic
    wanted = {request.place for request in requests if request.place[0] == topic}
    if not wanted:
        return Tally()
    reader = open_reader(settings, read_committed=True)
    writer = RecordWriter(settings)
    try:
        records = (
            record
            for record in read_records(reader, topic, ranges_of(wanted))
            if (record.topic, record.partition, record.offset) in wanted
        )
        tally = replay(
            records,
            destinations=Destinations(
                request_topic=topic, route_topics=frozenset(settings.routes.topics())
            ),
            window=Window(),
            filters=Filters(),
            send=writer.send,
        )
        tally.acknowledge(writer.confirm())
        return tally
    finally:
        writer.close()
        reader.close()


def ranges_of(places: Iterable[Place]) -> dict[int, OffsetRange]:
    """The smallest offset range per partition holding every place.

    Args:
        places: places of one topic.

    Returns:
        partition → range.
    """
    bounds: dict[int, tuple[int, int]] = {}
    for _, partition, offset in places:
        low, high = bounds.get(partition, (offset, offset))
        bounds[partition] = (min(low, offset), max(high, offset))
    return {p: OffsetRange(low, high + 1) for p, (low, high) in sorted(bounds.items())}
