"""Dead letter: a failed request → its dead-letter record (spec §2), so ``replay`` can re-drive it.

The original key, value bytes and headers travel unchanged; five headers are appended:
``error-code``, ``error-message``, ``source-topic``, ``source-partition`` and
``source-offset``. Every ``rejected`` and ``error`` outcome is dead-lettered.

A record the broker refuses as too large (a dead-letter topic whose ``max.message.bytes``
is below the request topic's, or a huge key that arrived compressed) is sent again without
its value, then also without the original headers, then without its key, each step named
in a header, so a huge request can never stall its partition; the original stays
readable at ``source-topic``/``-partition``/``-offset``.
A record with neither key nor value (a keyless tombstone) is copied with an empty key and
header ``key-null``: Kafka clients send no record without one of the two.
"""

from __future__ import annotations

import enum
import hashlib

from consumer.contract import Status, bounded
from consumer.outcome import Outcome
from consumer.record import Headers, InboundRecord, OutboundRecord

ERROR_CODE_HEADER = "error-code"
ERROR_MESSAGE_HEADER = "error-message"
SOURCE_TOPIC_HEADER = "source-topic"
SOURCE_PARTITION_HEADER = "source-partition"
SOURCE_OFFSET_HEADER = "source-offset"
# only on a record sent without its value: the value's size in bytes and its SHA-256
VALUE_OMITTED_HEADER = "value-omitted-bytes"
VALUE_SHA256_HEADER = "value-sha256"
# only on a record sent without the original headers: how many were left out
HEADERS_OMITTED_HEADER = "headers-omitted"
# only on a record sent without its key: the key's size in bytes
KEY_OMITTED_HEADER = "key-omitted-bytes"
# only on the copy of a record with neither key nor value: sent with an empty key instead,
# as a Kafka client must send one of the two (kafka-python asserts it)
KEY_NULL_HEADER = "key-null"
DEAD_LETTER_HEADERS = (
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    SOURCE_TOPIC_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_OFFSET_HEADER,
    VALUE_OMITTED_HEADER,
    VALUE_SHA256_HEADER,
    HEADERS_OMITTED_HEADER,
    KEY_OMITTED_HEADER,
    KEY_NULL_HEADER,
)
DEAD_LETTER_STATUSES = frozenset({Status.REJECTED, Status.ERROR})
MAX_ERROR_MESSAGE_CHARS = 1000


class Omit(enum.IntEnum):
    """How much of the original record a dead-letter record leaves out, smallest first."""

    NOTHING = 0
    VALUE = 1
    VALUE_AND_HEADERS = 2
    ALL = 3  # the key too: a compressed request's huge key can outgrow any uncompressed copy


def needs_dead_letter(outcome: Outcome) -> bool:
    """Tell whether an outcome is also written to the dead-letter topic.

    Args:
        outcome: what processing the request produced.

    Returns:
        True for ``rejected`` and ``error`` outcomes.
    """
    return outcome.status in DEAD_LETTER_STATUSES


def dead_letter_record(
    outcome: Outcome, record: InboundRecord, *, topic: str, omit: Omit = Omit.NOTHING
) -> OutboundRecord:
    """Build the dead-letter record of a failed request.

    Args:
        outcome: a ``rejected`` or ``error`` outcome.
        record: the original request record.
        topic: the dead-letter topic.
        omit: what to leave out after the broker refused a fuller record as too large.

    Returns:
        The original key, value and headers plus the five error and source headers;
        with ``omit``, an empty value and/or no original headers, and headers saying so.

    Raises:
        ValueError: when the outcome carries no error (a bug in the caller).
    """
    if outcome.error is None:
        raise ValueError(f"a {outcome.status} outcome without an error is not dead-lettered")
    added: Headers = (
        (ERROR_CODE_HEADER, outcome.error.code.value.encode("utf-8")),
        (
            ERROR_MESSAGE_HEADER,
            bounded(outcome.error.message, MAX_ERROR_MESSAGE_CHARS).encode("utf-8", "replace"),
        ),
        (SOURCE_TOPIC_HEADER, record.topic.encode("utf-8")),
        (SOURCE_PARTITION_HEADER, str(record.partition).encode("ascii")),
        (SOURCE_OFFSET_HEADER, str(record.offset).encode("ascii")),
    )
    value, original = record.value, record.headers
    if omit >= Omit.VALUE and value is not None:
        added += (
            (VALUE_OMITTED_HEADER, str(len(value)).encode("ascii")),
            (VALUE_SHA256_HEADER, hashlib.sha256(value).hexdigest().encode("ascii")),
        )
        value = b""
    if omit >= Omit.VALUE_AND_HEADERS and original:
        added += ((HEADERS_OMITTED_HEADER, str(len(original)).encode("ascii")),)
        original = ()
    key = record.key
    if omit >= Omit.ALL and key is not None:
        added += ((KEY_OMITTED_HEADER, str(len(key)).encode("ascii")),)
        key = None
    if key is None and value is None:  # a record must carry a key or a value to be sent
        key, added = b"", (*added, (KEY_NULL_HEADER, b"true"))
    return OutboundRecord(topic=topic, key=key, value=value, headers=original + added)
