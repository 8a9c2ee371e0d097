"""fingerprint: a canonical hash of (dag_id, conf, logical_date, note), stable across releases."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.contract import TriggerRequest
from consumer.fingerprint import fingerprint
from consumer.pipeline.decode import decode
from consumer.pipeline.validate import validate

FAST = settings(max_examples=100, deadline=None, database=None)


def _from_text(text: str) -> TriggerRequest:
    return validate(decode(text.encode()))


def _request(**fields: Any) -> TriggerRequest:
    base: dict[str, Any] = {"idempotency_key": "k", "dag_id": "etl_daily"}
    base.update(fields)
    return validate(base)


def test_fingerprint_is_pinned() -> None:
    """The fingerprint of a fixed request never changes (the store keeps fingerprints)."""
    request = _request(
        conf={"b": [1, 2.5, "é"], "a": None}, logical_date="2025-01-01T00:00:00Z", note="n"
    )
    canonical = (
        '{"conf":{"a":null,"b":[1,2.5,"é"]},"dag_id":"etl_daily",'
        '"logical_date":"2025-01-01T00:00:00+00:00","note":"n"}'
    )
    expected = "626c6637ea7c596476c47e067c53b1135bbd27f56942e301e7e6948c6355d433"
    assert hashlib.sha256(canonical.encode()).hexdigest() == expected
    assert fingerprint(request) == "sha256:" + expected


def test_key_order_and_whitespace_do_not_matter() -> None:
    """The same request written with other key order and whitespace has the same fingerprint."""
    first = _from_text('{"idempotency_key":"k","dag_id":"d","conf":{"a":1,"b":{"x":[1,2],"y":2}}}')
    second = _from_text(
        '{ "conf" : { "b" : { "y" : 2 , "x" : [ 1 , 2 ] } , "a" : 1 } ,\n'
        '  "dag_id" : "d" , "idempotency_key" : "k" }'
    )
    assert fingerprint(first) == fingerprint(second)


def test_zone_of_logical_date_does_not_matter() -> None:
    """One instant written in two zones gives one fingerprint."""
    utc = _request(logical_date="2025-01-01T00:00:00Z")
    offset = _request(logical_date="2025-01-01T02:00:00+02:00")
    assert fingerprint(utc) == fingerprint(offset)


def test_routing_fields_are_not_part_of_it() -> None:
    """correlation_id, reply_topic and track may differ between redeliveries of one request."""
    base = _request()
    other = _request(correlation_id="c", reply_topic="t", track=True)
    assert fingerprint(base) == fingerprint(other)


def test_each_fingerprinted_field_matters() -> None:
    """A different dag_id, conf, logical_date or note gives a different fingerprint."""
    base = fingerprint(_request(conf={"n": 1}, note="x", logical_date="2025-01-01T00:00:00Z"))
    variants = [
        _request(dag_id="other", conf={"n": 1}, note="x", logical_date="2025-01-01T00:00:00Z"),
        _request(conf={"n": 2}, note="x", logical_date="2025-01-01T00:00:00Z"),
        _request(conf={"n": 1.0}, note="x", logical_date="2025-01-01T00:00:00Z"),
        _request(conf={"n": 1}, note="y", logical_date="2025-01-01T00:00:00Z"),
        _request(conf={"n": 1}, note=None, logical_date="2025-01-01T00:00:00Z"),
        _request(conf={"n": 1}, note="x", logical_date="2025-01-01T00:00:01Z"),
        _request(conf={"n": 1}, note="x"),
    ]
    prints = {fingerprint(variant) for variant in variants}
    assert base not in prints
    assert len(prints) == len(variants)


conf_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@FAST
@given(st.dictionaries(st.text(max_size=4), conf_values, max_size=5))
def test_reserialised_conf_keeps_its_fingerprint(conf: dict[str, Any]) -> None:
    """A conf re-serialised with sorted keys and indentation keeps its fingerprint."""
    compact = json.dumps({"idempotency_key": "k", "dag_id": "d", "conf": conf})
    pretty = json.dumps(
        {"conf": conf, "dag_id": "d", "idempotency_key": "k"}, indent=3, sort_keys=True
    )
    assert fingerprint(_from_text(compact)) == fingerprint(_from_text(pretty))
