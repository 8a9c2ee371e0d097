"""Dead letter: a failed request → its dead-letter record (spec §2), so ``replay`` can re-drive it.

The original key, value bytes and headers travel unchanged; five headers are appended:
``error-code``, ``error-message``, ``source-topic``, ``source-partition`` and
``source-offset``. Every ``rejected`` and ``error`` outcome is dead-lettered.
"""

from __future__ import annotations

from consumer.contract import Status, bounded
from consumer.outcome import Outcome
from consumer.record import InboundRecord, OutboundRecord

ERROR_CODE_HEADER = "error-code"
ERROR_MESSAGE_HEADER = "error-message"
SOURCE_TOPIC_HEADER = "source-topic"
SOURCE_PARTITION_HEADER = "source-partition"
SOURCE_OFFSET_HEADER = "source-offset"
DEAD_LETTER_HEADERS = (
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    SOURCE_TOPIC_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_OFFSET_HEADER,
)
DEAD_LETTER_STATUSES = frozenset({Status.REJECTED, Status.ERROR})
MAX_ERROR_MESSAGE_CHARS = 1000


def needs_dead_letter(outcome: Outcome) -> bool:
    """Tell whether an outcome is also written to the dead-letter topic.

    Args:
        outcome: what processing the request produced.

    Returns:
        True for ``rejected`` and ``error`` outcomes.
    """
    return outcome.status in DEAD_LETTER_STATUSES


def dead_letter_record(outcome: Outcome, record: InboundRecord, *, topic: str) -> OutboundRecord:
    """Build the dead-letter record of a failed request.

    Args:
        outcome: a ``rejected`` or ``error`` outcome.
        record: the original request record.
        topic: the dead-letter topic.

    Returns:
        The original key, value and headers plus the five error and source headers.

    Raises:
        ValueError: when the outcome carries no error (a bug in the caller).
    """
    if outcome.error is None:
        raise ValueError(f"a {outcome.status} outcome without an error is not dead-lettered")
    added = (
        (ERROR_CODE_HEADER, outcome.error.code.value.encode("utf-8")),
        (
            ERROR_MESSAGE_HEADER,
            bounded(outcome.error.message, MAX_ERROR_MESSAGE_CHARS).encode("utf-8", "replace"),
        ),
        (SOURCE_TOPIC_HEADER, record.topic.encode("utf-8")),
        (SOURCE_PARTITION_HEADER, str(record.partition).encode("ascii")),
        (SOURCE_OFFSET_HEADER, str(record.offset).encode("ascii")),
    )
    return OutboundRecord(
        topic=topic, key=record.key, value=record.value, headers=record.headers + added
    )
