"""kafka-python ``ConsumerRecord`` → ``InboundRecord``: where a client record becomes ours."""

from __future__ import annotations

from typing import Any

from consumer.record import InboundRecord


def to_inbound(record: Any) -> InboundRecord:
    """Detach a kafka-python ``ConsumerRecord`` from the client.

    Args:
        record: a ``ConsumerRecord`` (kafka-python is untyped, hence ``Any``).

    Returns:
        The same record as an ``InboundRecord``; a header without a value gets ``b""``.
    """
    return InboundRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        headers=tuple((name, value or b"") for name, value in record.headers or ()),
    )
