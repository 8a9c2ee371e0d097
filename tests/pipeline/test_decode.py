"""decode: bytes → a JSON object, or a typed rejection, whatever the bytes are."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import ErrorCode, Rejected
from consumer.limits import DEFAULT_LIMITS, Limits
from consumer.pipeline.decode import MAX_NUMBER_CHARS, decode, decode_json

FAST = settings(max_examples=200, deadline=None, database=None)
MIB = 1024 * 1024


def _code(value: bytes | None, limits: Limits = DEFAULT_LIMITS) -> ErrorCode:
    with pytest.raises(Rejected) as caught:
        decode(value, limits)
    return caught.value.code


def _rejected(value: bytes | None, limits: Limits = DEFAULT_LIMITS) -> Rejected:
    with pytest.raises(Rejected) as caught:
        decode(value, limits)
    return caught.value


def test_object_decodes_to_dict() -> None:
    """A JSON object comes back as a dict with its values, unicode included."""
    value = '{"idempotency_key": "k", "conf": {"n": 1, "x": [1.5, "é", null, true]}}'
    assert decode(value.encode()) == {
        "idempotency_key": "k",
        "conf": {"n": 1, "x": [1.5, "é", None, True]},
    }


def test_size_is_checked_before_parsing() -> None:
    """A value one byte over the limit is message_too_large even though it is not JSON."""
    limits = Limits(max_message_bytes=10)
    rejected = _rejected(b"\xff" * 11, limits)
    assert rejected.code is ErrorCode.MESSAGE_TOO_LARGE
    assert rejected.details == {"size": 11, "limit": 10}


def test_value_exactly_at_limit_is_read() -> None:
    """A value exactly at the byte limit is decoded."""
    value = b'{"a": "' + b"x" * 3 + b'"}'
    assert decode(value, Limits(max_message_bytes=len(value))) == {"a": "xxx"}


def test_default_limit_is_one_mebibyte() -> None:
    """By default 1 MiB passes the size check and 1 MiB + 1 byte does not."""
    body = b'{"a": "' + b"x" * (MIB - 9) + b'"}'
    assert len(body) == MIB
    assert decode(body) == {"a": "x" * (MIB - 9)}
    assert _code(body + b" ") is ErrorCode.MESSAGE_TOO_LARGE


def test_invalid_utf8_names_the_byte() -> None:
    """Bytes that are not UTF-8 are invalid_encoding, with the position of the bad byte."""
    rejected = _rejected(b'{"a": "\xc3\x28"}')
    assert rejected.code is ErrorCode.INVALID_ENCODING
    assert rejected.details["position"] == 7


def test_unpaired_surrogate_escape_is_invalid_encoding() -> None:
    """An unpaired surrogate escape cannot become UTF-8 text: refused, with its path."""
    rejected = _rejected(b'{"conf": {"a": ["\\ud800"]}}')
    assert rejected.code is ErrorCode.INVALID_ENCODING
    assert rejected.details["field"] == "conf.a.0"
    assert _code(b'{"\\udfff": 1}') is ErrorCode.INVALID_ENCODING


def test_surrogate_pair_escape_is_one_character() -> None:
    """A proper surrogate pair escape decodes to its character."""
    assert decode(b'{"a": "\\ud83c\\udf89"}') == {"a": "🎉"}


@pytest.mark.parametrize("value", [None, b"", b"   ", b"{", b'{"a": 1} {}', b"{'a': 1}"])
def test_not_json_is_invalid_json(value: bytes | None) -> None:
    """Tombstones, empty values, truncated or trailing data and Python literals are invalid_json."""
    assert _code(value) is ErrorCode.INVALID_JSON


def test_byte_order_mark_is_invalid_json() -> None:
    """A UTF-8 byte order mark is not JSON (RFC 8259 forbids adding one)."""
    assert _code(b"\xef\xbb\xbf{}") is ErrorCode.INVALID_JSON


def test_parse_error_details_are_bounded() -> None:
    """A parse error says where, and echoes at most a short slice of the input."""
    rejected = _rejected(b'{"a": ' + b"x" * 100_000 + b"}")
    assert rejected.details["line"] == 1
    assert rejected.details["column"] == 7
    assert len(rejected.details["near"]) <= 41


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_constants_are_refused(literal: bytes) -> None:
    """NaN and Infinity, which Python's json accepts, are invalid_json."""
    rejected = _rejected(b'{"a": ' + literal + b"}")
    assert rejected.code is ErrorCode.INVALID_JSON
    assert rejected.details["reason"] == "non_finite_number"


@pytest.mark.parametrize("number", [b"1e400", b"-1E+999", b"9" * 400 + b".0"])
def test_numbers_beyond_a_double_are_refused(number: bytes) -> None:
    """A float that would overflow to infinity is invalid_json, not silently inf."""
    rejected = _rejected(b'{"a": ' + number + b"}")
    assert rejected.code is ErrorCode.INVALID_JSON
    assert rejected.details["reason"] == "number_out_of_range"


@pytest.mark.parametrize(
    "number",
    [b"1" + b"0" * 290 + b"e20", b"-" + b"9" * 299 + b"e10", b"1" + b"0" * 298 + b".5E+99"],
)
def test_short_mantissa_with_two_digit_exponent_overflow_is_refused(number: bytes) -> None:
    """Regression: under 300 digits with a two-digit exponent can still overflow: invalid_json.

    These used to decode to inf (no 300-digit run, no three-digit exponent) and surfaced
    later as a schema_violation of conf.
    """
    rejected = _rejected(b'{"conf": {"n": ' + number + b"}}")
    assert rejected.code is ErrorCode.INVALID_JSON
    assert rejected.details["reason"] == "number_out_of_range"


def test_largest_number_without_risky_pattern_is_finite() -> None:
    """299 digits with a one-digit exponent stays below the double range, so needs no hook."""
    assert decode(b'{"n": ' + b"9" * 299 + b"e9}") == {"n": float("9" * 299 + "e9")}


def test_huge_integers_are_refused_cheaply() -> None:
    """An integer over MAX_NUMBER_CHARS digits is invalid_json; one at the bound is read."""
    at_bound = b"7" * MAX_NUMBER_CHARS
    assert decode(b'{"a": ' + at_bound + b"}") == {"a": int(at_bound)}
    for digits in (MAX_NUMBER_CHARS + 1, 5000, 500_000):
        rejected = _rejected(b'{"a": ' + b"7" * digits + b"}")
        assert rejected.code is ErrorCode.INVALID_JSON
        assert rejected.details["reason"] == "number_too_long"


def test_long_digit_strings_are_not_numbers() -> None:
    """Long runs of digits inside strings are ordinary text."""
    assert decode(b'{"a": "' + b"9" * 5000 + b'e999"}') == {"a": "9" * 5000 + "e999"}


def test_duplicate_keys_are_schema_violations_with_paths() -> None:
    """A key repeated in one object is refused (never last-one-wins), naming where."""
    rejected = _rejected(b'{"dag_id": "a", "dag_id": "b"}')
    assert rejected.code is ErrorCode.SCHEMA_VIOLATION
    assert rejected.details["errors"] == [
        {
            "field": "dag_id",
            "loc": ["dag_id"],
            "reason": "duplicate_key",
            "message": "the key occurs more than once",
        }
    ]
    nested = _rejected(b'{"conf": {"items": [{"x": 1, "x": 1}]}}')
    assert nested.details["errors"][0]["loc"] == ["conf", "items", 0, "x"]


def test_every_repeated_key_is_named_though_the_parse_stops_at_the_first() -> None:
    """The fast parse stops at the first repeat; the report still names each, in any object."""
    rejected = _rejected(
        b'{"conf": {"a": 1, "a": 2, "b": {"c": 1, "c": 1}}, "note": "x", "note": "y"}'
    )
    assert sorted(e["field"] for e in rejected.details["errors"]) == ["conf.a", "conf.b.c", "note"]


def test_a_repeated_key_does_not_hide_a_later_syntax_error_or_number() -> None:
    """After a repeated key, invalid JSON and out-of-range numbers are still refused as such."""
    assert _rejected(b'{"a": 1, "a": 2, "b": }').code is ErrorCode.INVALID_JSON
    out_of_range = _rejected(b'{"a": 1, "a": 2, "b": 1e999}')
    assert out_of_range.details["reason"] == "number_out_of_range"


def test_same_key_in_different_objects_is_fine() -> None:
    """The same key in sibling or nested objects is not a duplicate."""
    assert decode(b'{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}') == {
        "a": {"a": 1},
        "b": [{"a": 1}, {"a": 2}],
    }


@pytest.mark.parametrize(("value", "kind"), [(b"[]", "array"), (b"1", "number"), (b"null", "null")])
def test_top_level_must_be_an_object(value: bytes, kind: str) -> None:
    """A top level other than an object is not_an_object, naming what it is."""
    rejected = _rejected(value)
    assert rejected.code is ErrorCode.NOT_AN_OBJECT
    assert rejected.details["type"] == kind


def _nest(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def test_conf_at_depth_bound_is_read() -> None:
    """A conf nested exactly max_conf_depth levels deep passes decode."""
    limits = Limits(max_conf_depth=5)
    value = b'{"conf": {"a": ' + _nest(4) + b"}}"
    assert decode(value, limits)["conf"] == {"a": [[[[]]]]}


def test_deep_conf_is_conf_too_large() -> None:
    """A conf one level deeper than the bound is conf_too_large, before any parsing."""
    limits = Limits(max_conf_depth=5)
    rejected = _rejected(b'{"conf": {"a": ' + _nest(5) + b"}}", limits)
    assert rejected.code is ErrorCode.CONF_TOO_LARGE
    assert rejected.details["field"] == "conf"


def test_deep_nesting_elsewhere_names_the_field() -> None:
    """Deep nesting in a contract field is schema_violation; in an unknown one, unknown_fields."""
    deep = _nest(100)
    known = _rejected(b'{"idempotency_key": "k", "note": ' + deep + b"}")
    assert known.code is ErrorCode.SCHEMA_VIOLATION
    assert known.details["errors"][0]["loc"] == ["note"]
    unknown = _rejected(b'{"cnof": ' + deep + b"}")
    assert unknown.code is ErrorCode.UNKNOWN_FIELDS
    assert unknown.details["fields"] == ["cnof"]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """Brackets and escaped quotes inside strings never count towards the depth bound."""
    text = '{"a": "' + "[{" * 1000 + '\\"[[[", "b": ["]]]"]}'
    assert decode(text.encode()) == {"a": "[{" * 1000 + '"[[[', "b": ["]]]"]}


HOSTILE = {
    "deep arrays": b"[" * MIB,
    "deep objects": b'{"a":' * (MIB // 5),
    "deep conf": b'{"conf":' + b'{"a":' * 200_000,
    "many small arrays then deep": b'{"conf":[' + b"[]," * 340_000 + _nest(40) + b"]}",
    "giant string": b'{"a": "' + b"x" * (MIB - 10) + b'"}',
    "escaped quotes": b'{"a": "' + b'\\"' * (MIB // 2 - 10) + b'"}',
    "unterminated escapes": b'"' + b'\\"' * (MIB // 2 - 1),
    "many numbers": b"[" + b"1," * (MIB // 2 - 1) + b"1]",
    "many objects": b"[" + b"{}," * (MIB // 3 - 1) + b"{}]",
    "many duplicates": b"[" + b'{"x":1,"x":2},' * 70_000 + b"{}]",
    "long number": b'{"a": ' + b"9" * (MIB - 10) + b"}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_messages_are_refused_with_bounded_detail(name: str) -> None:
    """A crafted 1 MiB message never raises RecursionError; its refusal stays small.

    (How long it takes is no unit test's business: a timed bound failed under load.)
    """
    try:
        decode(HOSTILE[name])
    except Rejected as rejected:
        assert len(json.dumps(rejected.details)) < 4000
        assert len(rejected.message) < 1000


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_give_an_object_or_a_typed_error(value: bytes) -> None:
    """Arbitrary bytes decode to a dict or raise Rejected, never anything else."""
    try:
        result = decode(value)
    except Rejected as rejected:
        assert isinstance(rejected.code, ErrorCode)
    else:
        assert isinstance(result, dict)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=100, deadline=None, database=None)
@given(json_values)
def test_random_json_round_trips_or_is_typed_error(document: Any) -> None:
    """Any JSON value decodes to itself when it is an object, else raises not_an_object."""
    value = json.dumps(document).encode()
    if isinstance(document, dict):
        assert decode(value) == document
    else:
        with pytest.raises(Rejected) as caught:
            decode(value)
        assert caught.value.code is ErrorCode.NOT_AN_OBJECT


@FAST
@given(st.text(alphabet='{}[]":,\\ 1eE.-0nulltrueNaN', max_size=80))
def test_json_like_noise_gives_an_object_or_a_typed_error(text: str) -> None:
    """Strings built from JSON punctuation never make decode raise anything but Rejected."""
    try:
        decode(text.encode())
    except Rejected as rejected:
        assert isinstance(rejected.code, ErrorCode)


@settings(max_examples=100, deadline=None, database=None)
@given(json_values)
def test_decode_json_reads_any_json_value(document: Any) -> None:
    """decode_json gives back any JSON value, not only objects."""
    assert decode_json(json.dumps(document).encode()) == document


def _json_refusal(value: bytes, limits: Limits = DEFAULT_LIMITS) -> Rejected:
    with pytest.raises(Rejected) as caught:
        decode_json(value, limits)
    return caught.value


def test_decode_json_nesting_past_the_message_bound_is_invalid_json() -> None:
    """Any value may nest as deep as a whole message; one level more is invalid_json too_deep."""
    limits = Limits(max_conf_depth=5)
    assert decode_json(_nest(6), limits) == json.loads(_nest(6))
    rejected = _json_refusal(_nest(7), limits)
    assert rejected.code is ErrorCode.INVALID_JSON
    assert rejected.details == {"reason": "too_deep", "max_depth": 6}
    assert _json_refusal(b"[" * MIB).details["reason"] == "too_deep"


@pytest.mark.parametrize(
    ("value", "code", "reason"),
    [
        (b"1e400", ErrorCode.INVALID_JSON, "number_out_of_range"),
        (b"[1" + b"0" * MAX_NUMBER_CHARS + b"]", ErrorCode.INVALID_JSON, "number_too_long"),
        (b"[Infinity]", ErrorCode.INVALID_JSON, "non_finite_number"),
        (b"[1,]", ErrorCode.INVALID_JSON, "Expecting value"),
        (b"", ErrorCode.INVALID_JSON, "Expecting value"),
        (b'"\\ud800"', ErrorCode.INVALID_ENCODING, "unpaired_surrogate"),
        (b'"\xff"', ErrorCode.INVALID_ENCODING, "invalid start byte"),
    ],
)
def test_decode_json_refuses_what_decode_refuses(
    value: bytes, code: ErrorCode, reason: str
) -> None:
    """Numbers, syntax and encoding are checked as for a message, with the same codes."""
    rejected = _json_refusal(value)
    assert (rejected.code, rejected.details["reason"]) == (code, reason)


def test_decode_json_refuses_a_repeated_key_with_its_path() -> None:
    """A key twice in one object, at any depth, is schema_violation naming the key's path."""
    rejected = _json_refusal(b'[{"a": {"b": 1, "b": 2}}]')
    assert rejected.code is ErrorCode.SCHEMA_VIOLATION
    assert [e["field"] for e in rejected.details["errors"]] == ["0.a.b"]
