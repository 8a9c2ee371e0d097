"""validate: a decoded object → TriggerRequest, with the exact error code for each broken rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.contract import correlation_id_from_headers, is_idempotency_key
from consumer.errors import ErrorCode, Rejected
from consumer.limits import Limits
from consumer.pipeline.decode import decode
from consumer.pipeline.validate import validate

FAST = settings(max_examples=150, deadline=None, database=None)


def _payload(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"idempotency_key": "order-42", "dag_id": "etl_daily"}
    base.update(fields)
    return base


def _rejected(payload: dict[str, Any], limits: Limits | None = None) -> Rejected:
    with pytest.raises(Rejected) as caught:
        validate(payload, limits or Limits())
    return caught.value


def _violation(payload: dict[str, Any]) -> list[dict[str, Any]]:
    rejected = _rejected(payload)
    assert rejected.code is ErrorCode.SCHEMA_VIOLATION
    errors: list[dict[str, Any]] = rejected.details["errors"]
    return errors


def test_minimal_request_gets_defaults() -> None:
    """Only key and dag_id: conf {}, track false, version 1, correlation id = the key."""
    request = validate(_payload())
    assert request.conf == {}
    assert request.track is False
    assert request.schema_version == 1
    assert request.logical_date is None
    assert request.note is None
    assert request.reply_topic is None
    assert request.correlation_id == "order-42"


def test_full_request_keeps_every_field() -> None:
    """Every contract field is read as given."""
    request = validate(
        _payload(
            conf={"n": 1, "nested": {"x": [1, 2]}},
            logical_date="2025-01-01T00:00:00Z",
            note="hello",
            correlation_id="corr-1",
            reply_topic="my-replies",
            track=True,
            schema_version=1,
        )
    )
    assert request.conf == {"n": 1, "nested": {"x": [1, 2]}}
    assert request.logical_date == datetime(2025, 1, 1, tzinfo=UTC)
    assert (request.note, request.correlation_id, request.reply_topic) == (
        "hello",
        "corr-1",
        "my-replies",
    )
    assert request.track is True


def test_null_means_absent_for_optional_text_fields() -> None:
    """logical_date, note, correlation_id and reply_topic accept null as "not given"."""
    request = validate(
        _payload(logical_date=None, note=None, correlation_id=None, reply_topic=None)
    )
    assert request.logical_date is None
    assert request.correlation_id == "order-42"


@pytest.mark.parametrize("field", ["conf", "track", "schema_version", "dag_id", "idempotency_key"])
def test_null_is_refused_where_a_value_is_meant(field: str) -> None:
    """Null is a schema violation for fields that have a non-null default or are required."""
    assert _violation(_payload(**{field: None}))[0]["field"] == field


def test_correlation_id_falls_back_to_header_then_key() -> None:
    """The field wins over the header, the header over the key; a bad header is ignored."""
    header = (("correlation-id", b"from-header"),)
    assert validate(_payload(correlation_id="own"), headers=header).correlation_id == "own"
    assert validate(_payload(), headers=header).correlation_id == "from-header"
    for bad in (b"\xff", b"a\nb", b"", b"x" * 257):
        got = validate(_payload(), headers=(("correlation-id", bad),)).correlation_id
        assert got == "order-42"


def test_last_correlation_header_counts() -> None:
    """With repeated correlation-id headers the last one is used."""
    headers = (("correlation-id", b"first"), ("other", b"x"), ("correlation-id", b"last"))
    assert correlation_id_from_headers(headers) == "last"
    assert correlation_id_from_headers(()) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-02-01T12:00:00+05:30", datetime(2025, 2, 1, 6, 30, tzinfo=UTC)),
        ("2025-02-01T12:00:00-02:00", datetime(2025, 2, 1, 14, 0, tzinfo=UTC)),
        ("2025-02-01t12:00:00z", datetime(2025, 2, 1, 12, 0, tzinfo=UTC)),
        ("2025-02-01T12:00:00.123456Z", datetime(2025, 2, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2025-02-01T12:00:00.5+00:00", datetime(2025, 2, 1, 12, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_logical_date_is_normalised_to_utc(text: str, expected: datetime) -> None:
    """A logical_date with any zone becomes the same instant in UTC."""
    parsed = validate(_payload(logical_date=text)).logical_date
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-01T00:00:00",
        "2025-03-01",
        "yesterday",
        "2025-03-01 00:00:00Z",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "2025-01-01T00:00:60Z",
        "0001-01-01T00:00:00+01:00",
        "2025-01-01T00:00:00Z\n",
        1735689600,
        True,
    ],
)
def test_logical_date_needs_a_real_zoned_instant(value: object) -> None:
    """Naive, date-only, impossible or non-string logical dates are schema violations."""
    errors = _violation(_payload(logical_date=value))
    assert errors[0]["field"] == "logical_date"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("track", "yes"),
        ("track", 1),
        ("schema_version", "1"),
        ("schema_version", 1.0),
        ("schema_version", True),
        ("conf", [1, 2]),
        ("conf", '{"n": 3}'),
        ("note", 5),
        ("idempotency_key", 42),
        ("dag_id", ["etl_daily"]),
        ("reply_topic", 7),
    ],
)
def test_types_are_strict(field: str, value: object) -> None:
    """No coercion: a value of the wrong JSON type is a schema violation at its field."""
    errors = _violation(_payload(**{field: value}))
    assert [error["field"] for error in errors] == [field]


@pytest.mark.parametrize(
    "dag_id", ["etl daily", "etl/daily", "étl", "etl\n", "", "a" * 251, "etl:daily"]
)
def test_dag_id_charset_and_length(dag_id: str) -> None:
    """dag_id outside [A-Za-z0-9_.-] or over 250 chars is a schema violation."""
    assert _violation(_payload(dag_id=dag_id))[0]["field"] == "dag_id"


def test_dag_id_at_its_bounds_is_valid() -> None:
    """A 250-char dag_id and one using every allowed character pass."""
    assert validate(_payload(dag_id="a" * 250)).dag_id == "a" * 250
    assert validate(_payload(dag_id="Az09_.-")).dag_id == "Az09_.-"


@pytest.mark.parametrize(
    "key", ["", "a\x00b", "tab\there", "line\n", "del\x7f", "c1\x85", "k" * 257]
)
def test_idempotency_key_rules(key: str) -> None:
    """Keys must be 1-256 characters without control characters."""
    assert _violation(_payload(idempotency_key=key))[0]["field"] == "idempotency_key"
    assert not is_idempotency_key(key)


@pytest.mark.parametrize("key", ["k", "k" * 256, "🎉" * 256, "a b/c", "\u00a0nbsp", "日本"])
def test_idempotency_keys_that_pass(key: str) -> None:
    """Any printable text of 1-256 characters (unicode included) is a key."""
    assert validate(_payload(idempotency_key=key)).idempotency_key == key
    assert is_idempotency_key(key)


def test_note_length() -> None:
    """A note of 1000 characters passes; 1001 is a schema violation."""
    assert validate(_payload(note="ü" * 1000)).note == "ü" * 1000
    assert _violation(_payload(note="x" * 1001))[0]["field"] == "note"


@pytest.mark.parametrize("topic", ["a b", "topic/x", "", "t" * 250, "é"])
def test_reply_topic_must_be_a_kafka_topic_name(topic: str) -> None:
    """reply_topic must be a legal Kafka topic name."""
    assert _violation(_payload(reply_topic=topic))[0]["field"] == "reply_topic"


def test_unknown_fields_are_all_named() -> None:
    """Every unknown field is named, in order, along with the allowed ones."""
    rejected = _rejected(_payload(dagid="x", Conf={}, extra=1))
    assert rejected.code is ErrorCode.UNKNOWN_FIELDS
    assert rejected.details["fields"] == ["dagid", "Conf", "extra"]
    assert rejected.details["count"] == 3
    assert "dag_id" in rejected.details["allowed"]
    assert "dagid" in rejected.message


def test_unknown_field_names_are_bounded() -> None:
    """A huge unknown field name is echoed only in part; a flood of names only in part."""
    rejected = _rejected({f"f{i}" + "x" * 10_000: 1 for i in range(1000)})
    assert rejected.code is ErrorCode.UNKNOWN_FIELDS
    assert rejected.details["count"] == 1000
    assert len(json.dumps(rejected.details)) < 5000
    assert len(rejected.message) < 1000


@pytest.mark.parametrize("version", [0, 2, 99, -1, 10**30])
def test_unknown_schema_version(version: int) -> None:
    """An integer schema_version other than 1 is unsupported_schema_version."""
    rejected = _rejected(_payload(schema_version=version))
    assert rejected.code is ErrorCode.UNSUPPORTED_SCHEMA_VERSION
    assert rejected.details["supported"] == [1]


def test_schema_version_is_checked_before_fields() -> None:
    """A future version with fields unknown to v1 is unsupported, not unknown_fields."""
    rejected = _rejected(_payload(schema_version=2, priority="high"))
    assert rejected.code is ErrorCode.UNSUPPORTED_SCHEMA_VERSION


def test_conf_size_bound() -> None:
    """A conf at the serialized byte bound passes; one byte more is conf_too_large."""
    limits = Limits(max_conf_bytes=20)
    at_bound = {"k": "x" * 12}  # {"k":"xxxxxxxxxxxx"} is 20 bytes
    assert validate(_payload(conf=at_bound), limits).conf == at_bound
    rejected = _rejected(_payload(conf={"k": "x" * 13}), limits)
    assert rejected.code is ErrorCode.CONF_TOO_LARGE
    assert rejected.details == {"field": "conf", "size": 21, "max_bytes": 20}


def test_conf_size_counts_utf8_bytes() -> None:
    """The conf size is measured in UTF-8 bytes of compact JSON, not characters."""
    limits = Limits(max_conf_bytes=20)
    assert _rejected(_payload(conf={"k": "é" * 7}), limits).code is ErrorCode.CONF_TOO_LARGE


def test_default_conf_bound_is_64_kib() -> None:
    """By default a conf of 64 KiB passes and a larger one is conf_too_large."""
    assert validate(_payload(conf={"k": "x" * (64 * 1024 - 8)}))
    too_big = _rejected(_payload(conf={"k": "x" * (64 * 1024)}))
    assert too_big.code is ErrorCode.CONF_TOO_LARGE


def _nested(depth: int) -> dict[str, Any]:
    conf: dict[str, Any] = {}
    for _ in range(depth - 1):
        conf = {"a": conf}
    return conf


def test_conf_depth_bound() -> None:
    """A conf of max_conf_depth levels passes; one more level is conf_too_large."""
    assert validate(_payload(conf=_nested(32)))
    rejected = _rejected(_payload(conf=_nested(33)))
    assert rejected.code is ErrorCode.CONF_TOO_LARGE
    assert rejected.details["max_depth"] == 32
    assert validate(_payload(conf=_nested(3)), Limits(max_conf_depth=3))
    assert _rejected(_payload(conf={"a": [[]]}), Limits(max_conf_depth=2)).code is (
        ErrorCode.CONF_TOO_LARGE
    )


def test_conf_that_json_cannot_carry_is_refused() -> None:
    """A conf built in Python with a non-JSON value (NaN, a set) is a schema violation."""
    assert _violation(_payload(conf={"x": float("nan")}))[0]["field"] == "conf"
    assert _violation(_payload(conf={"x": {1, 2}}))[0]["field"] == "conf"


def test_error_details_never_echo_the_input() -> None:
    """A schema violation lists field path and reason, but not the offending value."""
    secret = "s3cr3t-" + "x" * 5000
    errors = _violation(_payload(dag_id=secret, track="yes"))
    assert {(e["field"], e["reason"]) for e in errors} == {
        ("dag_id", "string_too_long"),
        ("track", "bool_type"),
    }
    assert "s3cr3t" not in json.dumps(errors)
    assert all(set(e) == {"field", "loc", "reason", "message"} for e in errors)


def test_missing_required_fields_are_listed() -> None:
    """Both required fields missing: one error entry each."""
    errors = _violation({})
    assert {(e["field"], e["reason"]) for e in errors} == {
        ("idempotency_key", "missing"),
        ("dag_id", "missing"),
    }


optional_fields = st.fixed_dictionaries(
    {},
    optional={
        "idempotency_key": st.one_of(st.text(max_size=300), st.integers(), st.none()),
        "dag_id": st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True), st.text()),
        "conf": st.one_of(st.dictionaries(st.text(max_size=5), st.integers()), st.lists(st.none())),
        "logical_date": st.one_of(st.text(max_size=40), st.none(), st.integers()),
        "note": st.one_of(st.text(max_size=5), st.booleans()),
        "track": st.one_of(st.booleans(), st.text(max_size=3)),
        "schema_version": st.one_of(st.integers(-3, 3), st.text(max_size=2)),
        "reply_topic": st.text(max_size=10),
        "correlation_id": st.text(max_size=10),
        "unexpected": st.integers(),
    },
)


@FAST
@given(optional_fields)
def test_random_requests_validate_or_raise_a_typed_error(payload: dict[str, Any]) -> None:
    """Random near-contract JSON (via decode) gives a request or Rejected, never another error."""
    try:
        request = validate(decode(json.dumps(payload).encode()))
    except Rejected as rejected:
        assert isinstance(rejected.code, ErrorCode)
    else:
        assert request.correlation_id is not None
