"""Where a replayed record goes: back to its ``source-topic``, or to ``--to-topic`` (spec §6).

``Destinations.choose`` names one record's destination and why (``Via``); the replay loop
(``consumer.replay``) then skips the records whose destination nobody reads or that the
broker does not have.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from consumer.pipeline.dead_letter import SOURCE_TOPIC_HEADER
from consumer.record import InboundRecord


class Via(enum.Enum):
    """Why a record goes to its destination, or why it is skipped."""

    TO_TOPIC = "to_topic"  # --to-topic names the destination of every record
    SOURCE_TOPIC = "source_topic"  # its source-topic header, read by this configuration
    NO_SOURCE_TOPIC = "no_source_topic"  # no source-topic header: the request topic
    NOT_READ = "source_topic_not_read"  # skipped: no request topic or route reads its source
    MISSING = "topic_missing"  # skipped: the destination does not exist on the broker
    VALUE_OMITTED = "value_omitted"  # skipped: dead-lettered without its value

    @property
    def skipped(self) -> bool:
        """Whether a record with this verdict is left out."""
        return self in SKIPPED


SKIPPED = frozenset({Via.NOT_READ, Via.MISSING, Via.VALUE_OMITTED})


@dataclass(frozen=True)
class Destination:
    """Where one record is replayed to.

    Attributes:
        topic: the destination; for a skipped record the topic it would have gone to
            (``NOT_READ``: its source topic); None only for ``VALUE_OMITTED``.
        via: why this topic, or why the record is skipped.
    """

    topic: str | None
    via: Via


@dataclass(frozen=True)
class Destinations:
    """Where replayed records go: back where each came from, unless ``to_topic`` says.

    A dead letter names its origin in ``source-topic``: the request topic, or a route
    topic whose event the worker's routes turn into requests (spec §8). Sending each
    record back there re-drives it the way it first went; a route event written to the
    request topic would only be ``unknown_fields``.

    Attributes:
        request_topic: the configured request topic; also where a record without a
            ``source-topic`` header goes.
        route_topics: the topics the configured routes read.
        to_topic: ``--to-topic``: the destination of every record; None: per record.
    """

    request_topic: str
    route_topics: frozenset[str] = frozenset()
    to_topic: str | None = None

    def choose(self, record: InboundRecord) -> Destination:
        """The destination of one record (not checked against the broker).

        Args:
            record: a record of the source topic.

        Returns:
            ``to_topic`` when set; else its ``source-topic`` when this configuration reads
            that topic (``NOT_READ`` when it does not); else the request topic.
        """
        if self.to_topic is not None:
            return Destination(self.to_topic, Via.TO_TOPIC)
        source = source_topic_of(record)
        if source is None:
            return Destination(self.request_topic, Via.NO_SOURCE_TOPIC)
        if source == self.request_topic or source in self.route_topics:
            return Destination(source, Via.SOURCE_TOPIC)
        # routes changed or the topic was renamed: nobody would read a record sent there
        return Destination(source, Via.NOT_READ)


def source_topic_of(record: InboundRecord) -> str | None:
    """Read the ``source-topic`` header the worker wrote when dead-lettering.

    Args:
        record: a record of the source topic.

    Returns:
        The decoded header value, or None when the record has none (or an empty one).
    """
    raw = record.header(SOURCE_TOPIC_HEADER)
    if not raw:
        return None
    return raw.decode("utf-8", "replace")
