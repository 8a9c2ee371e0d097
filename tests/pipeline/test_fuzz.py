"""Fuzz: any bytes through decode → validate → policy give a valid request or a typed rejection."""

from __future__ import annotations

import json
import math
from fnmatch import fnmatchcase
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumer.contract import TriggerRequest
from consumer.errors import ErrorCode, Rejected
from consumer.limits import Limits
from consumer.outcome import Outcome
from consumer.pipeline.dead_letter import dead_letter_record
from consumer.pipeline.decode import decode
from consumer.pipeline.policy import Policy, check_policy
from consumer.pipeline.reply import reply_record
from consumer.pipeline.validate import validate
from consumer.record import Headers, InboundRecord

FUZZ = settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# small bounds, so that generated documents reach every limit
LIMITS = Limits(max_message_bytes=256 * 1024, max_conf_bytes=2048, max_conf_depth=6)
POLICY = Policy.from_lists("etl_*,report_daily", "replies-allowed")
ADMISSION_CODES = frozenset(
    {
        ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.INVALID_ENCODING,
        ErrorCode.INVALID_JSON,
        ErrorCode.NOT_AN_OBJECT,
        ErrorCode.UNKNOWN_FIELDS,
        ErrorCode.SCHEMA_VIOLATION,
        ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
        ErrorCode.CONF_TOO_LARGE,
        ErrorCode.DAG_NOT_ALLOWED,
        ErrorCode.REPLY_TOPIC_NOT_ALLOWED,
    }
)
FIELDS = list(TriggerRequest.model_fields)

_characters = st.characters() | st.characters(categories=["Cs", "Cc"])  # lone surrogates too
_text = st.text(_characters, max_size=12)
_valid_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1)
_keys = _text | st.sampled_from([*FIELDS, "dagid", "a"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()  # NaN and ±inf included: the serializer writes them as NaN / Infinity
    | _text
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=25,
)


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid three times in four, else any JSON value or text (so policy is reached too)."""
    return st.integers(0, 3).flatmap(lambda n: valid if n else _text | json_values)


_requests = st.fixed_dictionaries(
    {
        "idempotency_key": _mostly(_valid_text),
        "dag_id": _mostly(st.sampled_from(["etl_daily", "report_daily", "admin", "etl daily"])),
    },
    optional={
        "conf": _mostly(st.dictionaries(_keys, json_values, max_size=6)),
        "logical_date": _mostly(
            st.sampled_from(
                ["2025-01-01T00:00:00Z", "2025-01-01T00:00:00", "9999-12-31T23:59:59-23:59"]
            )
        ),
        "note": _mostly(_valid_text),
        "correlation_id": _mostly(_valid_text),
        "reply_topic": _mostly(st.sampled_from(["replies-allowed", "other"])),
        "track": _mostly(st.booleans()),
        "schema_version": _mostly(st.sampled_from([1, 2, 0, -1, True, 1.0, "1", 10**30])),
    },
)


def _dumps(document: Any, ascii_only: bool) -> bytes:
    text = json.dumps(document, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8


def _pairs_object(pairs: list[tuple[str, Any]]) -> bytes:
    """An object written pair by pair, so that a key may repeat."""
    members = ",".join(f"{json.dumps(key)}:{json.dumps(value)}" for key, value in pairs)
    return ("{" + members + "}").encode("utf-8", "surrogatepass")


def _nested(depth: int, opener: str, field: str) -> bytes:
    closer = "]" if opener == "[" else "}"
    inner = (opener if opener == "[" else '{"a":') * depth + ("1" if opener == "{" else "")
    head = json.dumps({"idempotency_key": "k", "dag_id": "etl_daily"})[:-1]
    return f"{head},{json.dumps(field)}:{inner}{closer * depth}}}".encode()


def _spliced(value: bytes, at: int, junk: bytes) -> bytes:
    cut = at % (len(value) + 1)
    return value[:cut] + junk + value[cut + len(junk) :]


_documents = st.builds(_dumps, json_values | _requests, st.booleans())
_values = st.one_of(
    _documents,
    st.builds(_pairs_object, st.lists(st.tuples(_keys, json_values), max_size=5)),
    st.builds(
        _nested,
        st.integers(1, 20_000),
        st.sampled_from(["[", "{"]),
        st.sampled_from(["conf", "note", "extra"]),
    ),
    st.builds(_spliced, _documents, st.integers(0, 10**6), st.binary(min_size=1, max_size=4)),
    st.builds(bytes.__add__, st.sampled_from([b"\xef\xbb\xbf", b"\x00", b" "]), _documents),
)
_headers = st.lists(
    st.tuples(st.sampled_from(["correlation-id", "trace", ""]), st.binary(max_size=64)),
    max_size=3,
).map(tuple)


def _admit(value: bytes | None, headers: Headers) -> TriggerRequest | Rejected:
    """The pure stages in pipeline order; also checks what decode promises of its output."""
    payload: dict[str, Any] | None = None
    try:
        payload = decode(value, LIMITS)
        _assert_plain_json(payload)
        request = validate(payload, LIMITS, headers=headers)
        check_policy(request, POLICY)
    except Rejected as rejected:
        _assert_answerable(value, headers, rejected, payload)
        return rejected
    return request


def _assert_plain_json(payload: dict[str, Any]) -> None:
    """Decoded output is strict JSON: finite numbers, Unicode text, no lone surrogates."""
    text = json.dumps(payload, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")


def _assert_answerable(
    value: bytes | None, headers: Headers, rejected: Rejected, payload: dict[str, Any] | None
) -> None:
    """A rejection has a pipeline code and builds its reply and its exact dead-letter copy."""
    assert type(rejected) is Rejected
    assert rejected.code in ADMISSION_CODES
    record = InboundRecord("requests", 0, 7, 0, None, value, headers)
    outcome = Outcome.rejected(record, rejected, payload=payload)
    reply = json.loads(
        reply_record(outcome, request_key=record.key, default_topic="r", worker="w").value or b""
    )
    assert (reply["status"], reply["error"]["code"]) == ("rejected", rejected.code.value)
    copy = dead_letter_record(outcome, record, topic="dlq")
    assert (copy.value, copy.headers[: len(headers)]) == (value, headers)


def _assert_outcome(result: TriggerRequest | Rejected) -> None:
    """Only a typed rejection or a request that satisfies every bound and allow-list."""
    if isinstance(result, Rejected):
        return
    assert isinstance(result, TriggerRequest)
    assert any(fnmatchcase(result.dag_id, pattern) for pattern in POLICY.dag_patterns)
    assert result.reply_topic in {None, *POLICY.reply_topics}
    assert result.correlation_id is not None
    conf = json.dumps(result.conf, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert len(conf.encode("utf-8")) <= LIMITS.max_conf_bytes
    assert all(math.isfinite(n) for n in _floats(result.conf))


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [number for child in value for number in _floats(child)]
    return []


@FUZZ
@given(value=st.binary(max_size=512) | st.none(), headers=_headers)
def test_arbitrary_bytes_are_a_request_or_a_typed_rejection(
    value: bytes | None, headers: Headers
) -> None:
    """Random bytes (and the tombstone) never raise anything but Rejected with a pipeline code."""
    _assert_outcome(_admit(value, headers))


# the first two are regressions: a short mantissa with a two-digit exponent decoded to inf
# (now invalid_json); the others pin a lone surrogate escape and 50,000 levels of nesting
@example(value=b'{"idempotency_key":"k","dag_id":"etl_a","conf":{"n":1' + b"0" * 290 + b"e20}}")
@example(value=b'{"idempotency_key":"k","dag_id":"etl_a","conf":{"n":-9' + b"9" * 298 + b"e10}}")
@example(value=b'{"idempotency_key":"k","dag_id":"etl_a","conf":{"n":"\\ud800"}}')
@example(
    value=b'{"idempotency_key":"k","dag_id":"etl_a","note":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
)
@FUZZ
@given(value=_values)
def test_json_ish_documents_are_a_request_or_a_typed_rejection(value: bytes) -> None:
    """Generated documents (requests, nesting, duplicates, splices) meet the same promise."""
    _assert_outcome(_admit(value, ()))


@FUZZ
@given(document=_requests, headers=_headers)
def test_request_shaped_documents_are_a_request_or_a_typed_rejection(
    document: dict[str, Any], headers: Headers
) -> None:
    """Request-shaped objects with hostile field values reach validate and policy safely."""
    _assert_outcome(_admit(_dumps(document, ascii_only=True), headers))
