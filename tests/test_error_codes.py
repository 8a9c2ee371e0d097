"""Error codes: enum, README and spec tables agree; every request-path code fires."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumer.errors import ErrorCode, Rejected
from consumer.limits import Limits
from consumer.pipeline.decode import decode
from consumer.pipeline.policy import Policy, check_policy
from consumer.pipeline.validate import validate

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SPEC = Path("/work/shared/spec.md")  # the product spec, where this checkout can read it
LIMITS = Limits(max_message_bytes=4096, max_conf_bytes=256, max_conf_depth=4)
POLICY = Policy(
    dag_patterns=("etl_*", "report_daily"),
    reply_topics=frozenset({"replies-a", "replies-b"}),
    rerun_patterns=("etl_*",),
)
ROW = re.compile(r"^\| `([a-z_]+)` \| (\w+) \|")
# codes an issue added beyond the spec's table (the spec is read-only here): issue → codes
BEYOND_SPEC = {
    "issue 15 (routes)": {"invalid_cloudevent", "no_route_matched", "route_expression_failed"},
    "issue 29 (re-runs)": {"rerun_conflict", "rerun_not_allowed"},
    "issue 30 (flow control)": {"not_before_too_far"},
}
ROUTE_CODES = BEYOND_SPEC["issue 15 (routes)"]


def _table(text: str, heading: str) -> dict[str, str]:
    """The code → status rows of the first table under ``heading``."""
    section = text.split(heading, 1)[1]
    rows: dict[str, str] = {}
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_readme_table_lists_exactly_the_error_codes() -> None:
    """The README's error-code table has one row per ErrorCode, and no other."""
    table = _table(README.read_text(encoding="utf-8"), "## Error codes")
    assert list(table) == [code.value for code in ErrorCode]


def test_readme_table_matches_spec_table() -> None:
    """README and spec list the same codes with the same statuses (when the spec is readable)."""
    readme = _table(README.read_text(encoding="utf-8"), "## Error codes")
    assert set(readme.values()) == {"rejected", "error", "completed"}
    if SPEC.is_file():
        spec = _table(SPEC.read_text(encoding="utf-8"), "### Error codes")
        added = set().union(*BEYOND_SPEC.values()) - set(spec)
        # every spec code is in the README with its status; the rest are named by an issue
        assert {code: readme[code] for code in spec if code in readme} == spec
        assert set(readme) == set(spec) | added


def _msg(**fields: object) -> bytes:
    base: dict[str, object] = {"idempotency_key": "k-1", "dag_id": "etl_daily"}
    base.update(fields)
    return json.dumps(base).encode()


def _ahead(**span: float) -> str:
    return (datetime.now(UTC) + timedelta(**span)).isoformat()


def _run(value: bytes) -> None:
    """Decode, validate and check policy: the whole request path before dedup."""
    check_policy(validate(decode(value, LIMITS), LIMITS), POLICY)


REQUEST_PATH_CASES = [
    (ErrorCode.MESSAGE_TOO_LARGE, b"x" * 4097),
    (ErrorCode.MESSAGE_TOO_LARGE, _msg(conf={"blob": "y" * 5000})),
    (ErrorCode.INVALID_ENCODING, b'{"idempotency_key": "\xff", "dag_id": "etl_daily"}'),
    (ErrorCode.INVALID_ENCODING, "{'dag_id': 'etl_daily'}".encode("utf-16")),
    (ErrorCode.INVALID_ENCODING, b'{"idempotency_key": "\\ud800", "dag_id": "etl_daily"}'),
    (ErrorCode.INVALID_JSON, b'{"idempotency_key": "k-1",}'),
    (ErrorCode.INVALID_JSON, b""),
    (
        ErrorCode.INVALID_JSON,
        b'{"idempotency_key": "k", "dag_id": "etl_daily", "conf": {"x": NaN}}',
    ),
    (ErrorCode.INVALID_JSON, b'{"conf": {"x": 1e999}}'),
    (ErrorCode.NOT_AN_OBJECT, b'[{"idempotency_key": "k-1", "dag_id": "etl_daily"}]'),
    (ErrorCode.NOT_AN_OBJECT, b'"etl_daily"'),
    (ErrorCode.NOT_AN_OBJECT, b"null"),
    (ErrorCode.UNKNOWN_FIELDS, b'{"idempotency_key": "k-1", "dagid": "etl_daily"}'),
    (ErrorCode.UNKNOWN_FIELDS, _msg(priority=1)),
    (ErrorCode.SCHEMA_VIOLATION, _msg(track="yes")),
    (ErrorCode.SCHEMA_VIOLATION, _msg(schema_version="1")),
    (ErrorCode.SCHEMA_VIOLATION, _msg(logical_date="2025-01-01T00:00:00")),
    (ErrorCode.SCHEMA_VIOLATION, _msg(dag_id="etl daily")),
    (
        ErrorCode.SCHEMA_VIOLATION,
        b'{"idempotency_key": "a", "idempotency_key": "b", "dag_id": "x"}',
    ),
    (ErrorCode.UNSUPPORTED_SCHEMA_VERSION, _msg(schema_version=2)),
    (ErrorCode.UNSUPPORTED_SCHEMA_VERSION, _msg(schema_version=0, future_field=True)),
    (ErrorCode.CONF_TOO_LARGE, _msg(conf={"blob": "y" * 300})),
    (ErrorCode.CONF_TOO_LARGE, _msg(conf={"a": {"b": {"c": {"d": {}}}}})),
    (ErrorCode.CONF_TOO_LARGE, _msg(conf={"a": [[[[[[[[[[1]]]]]]]]]]})),
    (ErrorCode.DAG_NOT_ALLOWED, _msg(dag_id="report_weekly")),
    (ErrorCode.DAG_NOT_ALLOWED, _msg(dag_id="ETL_daily")),
    (ErrorCode.REPLY_TOPIC_NOT_ALLOWED, _msg(reply_topic="replies-c")),
    (ErrorCode.REPLY_TOPIC_NOT_ALLOWED, _msg(reply_topic="replies-A", dag_id="nope")),
    (ErrorCode.RERUN_NOT_ALLOWED, _msg(dag_id="report_daily", rerun={"id": "fix-1"})),
    (
        ErrorCode.RERUN_NOT_ALLOWED,
        _msg(dag_id="report_daily", rerun={"id": "fix-1", "only_failed": True}),
    ),
    (ErrorCode.NOT_BEFORE_TOO_FAR, _msg(not_before="2999-01-01T00:00:00Z")),
    (ErrorCode.NOT_BEFORE_TOO_FAR, _msg(not_before=_ahead(days=8))),
    (ErrorCode.SCHEMA_VIOLATION, _msg(not_before="tomorrow")),
    (ErrorCode.SCHEMA_VIOLATION, _msg(not_before="2026-12-08T00:00:00")),  # no zone
    (ErrorCode.SCHEMA_VIOLATION, _msg(rerun={"id": ""})),
    (ErrorCode.SCHEMA_VIOLATION, _msg(rerun={"id": "x", "only_failed": "yes"})),
]


@pytest.mark.parametrize(("code", "value"), REQUEST_PATH_CASES)
def test_request_path_gives_the_exact_code(code: ErrorCode, value: bytes) -> None:
    """Each bad message is refused by decode/validate/policy with exactly its error code."""
    with pytest.raises(Rejected) as caught:
        _run(value)
    assert caught.value.code is code
    assert json.loads(json.dumps(caught.value.details)) == caught.value.details


def test_every_request_path_code_has_two_cases() -> None:
    """The table above covers each request-path code twice (reuse and conflict need a store)."""
    request_path = {
        ErrorCode(code)
        for code, status in _table(README.read_text(encoding="utf-8"), "## Error codes").items()
        if status == "rejected"
        and code not in {ErrorCode.IDEMPOTENCY_KEY_REUSED, ErrorCode.RERUN_CONFLICT}
        and code not in ROUTE_CODES  # events, not requests: tests/routes/ pins them
    }
    counts = {code: sum(case[0] is code for case in REQUEST_PATH_CASES) for code in request_path}
    assert all(count >= 2 for count in counts.values()), counts


def test_a_valid_message_passes_the_request_path() -> None:
    """The same path accepts a valid request (the table's failures are not accidental)."""
    _run(
        _msg(
            conf={"a": {"b": {"c": 1}}},
            reply_topic="replies-a",
            logical_date="2025-01-01T00:00:00Z",
        )
    )
