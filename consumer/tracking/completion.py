"""The ``completed`` outcome of a tracked run, built from what the store kept (spec §2).

The completion tracker has no request record, only the store's entry: the reply echoes the
entry's key and DAG and, from its ``origin``, the request's source, correlation id and reply
topic; the origin's route and trace context become the reply's headers
(``Answerer.publish_completed``).
"""

from __future__ import annotations

from consumer.contract import Source, Status
from consumer.outcome import Outcome, RunView, source_at
from consumer.store import StoredEntry

# Kafka's own "unknown" partition and offset: the source of a tracked run recorded before
# the store kept request coordinates (store schema version 1)
UNKNOWN_SOURCE = Source(topic="", partition=-1, offset=-1, timestamp=None)


def completed_outcome(entry: StoredEntry, run: RunView) -> Outcome:
    """Build the ``completed`` outcome of a tracked run from what the store kept.

    The tracker has no request record, only the store's entry: the reply echoes the
    entry's key and DAG and, from its ``origin``, the request's source, correlation id and
    reply topic. An entry without origin (recorded by a release that did not keep it)
    echoes ``UNKNOWN_SOURCE``, the key as correlation id, and goes to the default reply topic.

    Args:
        entry: the tracked entry.
        run: the run in its final state.

    Returns:
        A ``completed`` outcome, as ``Outcome.completed`` builds it; ``attempts`` is 0.
    """
    origin = entry.origin
    source = UNKNOWN_SOURCE
    if origin is not None:
        source = source_at(origin.topic, origin.partition, origin.offset, origin.timestamp_ms)
    base = Outcome(
        status=Status.COMPLETED,
        source=source,
        idempotency_key=entry.key,
        correlation_id=(origin.correlation_id if origin else None) or entry.key,
        dag_id=entry.dag_id,
        reply_topic=origin.reply_topic if origin else None,
        track=entry.track,
    )
    return base.completed(run)
