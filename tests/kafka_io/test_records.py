"""to_inbound: a kafka-python ConsumerRecord detached from the client (no broker)."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from consumer.kafka_io.records import to_inbound
from consumer.record import InboundRecord


def _consumer_record(**values: object) -> ConsumerRecord:
    """A ConsumerRecord as kafka-python's fetcher builds it, with ``values`` replaced."""
    fields: dict[str, object] = {
        "topic": "requests",
        "partition": 2,
        "leader_epoch": 0,
        "offset": 41,
        "timestamp": 1_700_000_000_000,
        "timestamp_type": 0,
        "key": b"k",
        "value": b'{"dag_id": "etl"}',
        "headers": [("correlation-id", b"c"), ("trace", b"\xff"), ("correlation-id", b"d")],
        "checksum": None,
        "serialized_key_size": 1,
        "serialized_value_size": 17,
        "serialized_header_size": 30,
    }
    fields.update(values)
    return ConsumerRecord(**fields)


def test_every_field_is_copied_and_headers_keep_order_and_duplicates() -> None:
    """Topic, partition, offset, timestamp, key, value and every header arrive unchanged."""
    assert to_inbound(_consumer_record()) == InboundRecord(
        topic="requests",
        partition=2,
        offset=41,
        timestamp_ms=1_700_000_000_000,
        key=b"k",
        value=b'{"dag_id": "etl"}',
        headers=(("correlation-id", b"c"), ("trace", b"\xff"), ("correlation-id", b"d")),
    )


def test_null_key_value_and_header_values_stay_null_or_become_empty() -> None:
    """A null key or value stays None; a header without a value becomes ``b""``."""
    inbound = to_inbound(_consumer_record(key=None, value=None, headers=[("flag", None)]))

    assert (inbound.key, inbound.value, inbound.headers) == (None, None, (("flag", b""),))


def test_missing_headers_are_no_headers() -> None:
    """A record whose headers are None (old message formats) has an empty header tuple."""
    assert to_inbound(_consumer_record(headers=None)).headers == ()
