"""Tally: what a replay did, counted per destination topic, error code and reason skipped.

The replay loop (``consumer.replay``) counts each record into it; ``summary`` renders the
line ``trigger-consumer replay`` prints at the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from consumer.replay_destinations import Destination, Via


@dataclass
class Tally:
    """What a replay did so far: records read, matched, sent and replayed, per topic.

    Attributes:
        read: records read from the source topic.
        matched: records that passed the window and the filters.
        by_error_code: matched records per ``error-code`` header (``none`` without one).
        sent: matched records handed to the producer (a dry run: that would be), per
            destination topic.
        replayed_by_topic: records the broker acknowledged, per destination topic.
        without_value: matched records dead-lettered without their value (too large for
            the dead-letter topic); never replayed, as they would arrive empty.
        without_source: matched records without a ``source-topic`` header, sent to the
            request topic (included in ``sent``).
        not_read: matched records skipped per source topic that neither the request topic
            nor a route of this configuration reads.
        missing: matched records skipped per destination topic the broker does not have.
    """

    read: int = 0
    matched: int = 0
    by_error_code: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    replayed_by_topic: Counter[str] = field(default_factory=Counter)
    without_value: int = 0
    without_source: int = 0
    not_read: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    # destination of each sent record, in send order: acks are counted in that order
    _order: list[str] = field(default_factory=list, repr=False)

    @property
    def replayed(self) -> int:
        """Records the broker acknowledged, on every destination topic."""
        return sum(self.replayed_by_topic.values())

    @property
    def skipped(self) -> int:
        """Matched records left out, for any reason."""
        return self.without_value + sum(self.not_read.values()) + sum(self.missing.values())

    def count(self, destination: Destination) -> None:
        """Count one matched record's verdict (not ``matched`` itself).

        Args:
            destination: where it goes, or why it is skipped.
        """
        topic, via = destination.topic, destination.via
        if via is Via.VALUE_OMITTED or topic is None:
            self.without_value += 1
        elif via is Via.NOT_READ:
            self.not_read[topic] += 1
        elif via is Via.MISSING:
            self.missing[topic] += 1
        else:
            self.sent[topic] += 1
            self._order.append(topic)
            if via is Via.NO_SOURCE_TOPIC:
                self.without_source += 1

    def acknowledge(self, acked: int) -> None:
        """Count as replayed the first ``acked`` records sent (the writer confirms in order).

        Args:
            acked: how many records the broker acknowledged (``RecordWriter.confirm``).
        """
        self.replayed_by_topic = Counter(self._order[:acked])

    def summary(self, *, dry_run: bool) -> str:
        """Render the one-line summary printed at the end.

        Args:
            dry_run: say "would replay" (what would be sent) instead of "replayed" (acked).

        Returns:
            ``read N, matched M, replayed K``, the counts per destination topic and per
            error code, then what was skipped or fell back, and why.
        """
        by_topic = self.sent if dry_run else self.replayed_by_topic
        done = "would replay" if dry_run else "replayed"
        line = f"read {self.read}, matched {self.matched}, {done} {sum(by_topic.values())}"
        if by_topic:
            line += f"; by topic: {_counts(by_topic)}"
        if self.by_error_code:
            line += f"; by error-code: {_counts(self.by_error_code)}"
        if self.without_source:
            line += f"; {self.without_source} without a source-topic header: to the request topic"
        if self.not_read:
            line += (
                f"; {sum(self.not_read.values())} skipped, source topic not read by this "
                f"configuration ({_counts(self.not_read)}): --to-topic replays them anyway"
            )
        if self.missing:
            line += (
                f"; {sum(self.missing.values())} skipped, topic does not exist "
                f"({_counts(self.missing)})"
            )
        if self.without_value:
            line += (
                f"; {self.without_value} skipped: dead-lettered without their value, "
                "replay them from their source-topic/-partition/-offset headers"
            )
        return line


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name}={n}" for name, n in sorted(counter.items()))
