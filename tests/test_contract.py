"""contract: the models are wire contract v1 and schemas/*.json never drift from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.contract import (
    REPLY_SCHEMA_FILE,
    REQUEST_SCHEMA_FILE,
    SCHEMA_VERSION,
    Reply,
    Status,
    TriggerRequest,
    bounded,
    json_schemas,
    render_json_schema,
)

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.mark.parametrize("name", [REQUEST_SCHEMA_FILE, REPLY_SCHEMA_FILE])
def test_schema_files_match_the_models(name: str) -> None:
    """schemas/<name> is exactly what the models generate (regenerate: trigger-consumer schema)."""
    stored = (SCHEMAS / name).read_text(encoding="utf-8")
    assert stored == render_json_schema(json_schemas()[name]), f"schemas/{name} drifted"


def test_schemas_directory_holds_only_generated_files() -> None:
    """No stale schema file lingers next to the generated ones."""
    assert sorted(path.name for path in SCHEMAS.glob("*.json")) == sorted(json_schemas())


def test_request_schema_states_the_contract() -> None:
    """The request schema forbids extra fields, requires key and dag_id, and lists every field."""
    schema = json_schemas()[REQUEST_SCHEMA_FILE]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["idempotency_key", "dag_id"]
    assert list(schema["properties"]) == [
        "idempotency_key",
        "dag_id",
        "conf",
        "logical_date",
        "note",
        "not_before",  # issue 30, additive
        "correlation_id",
        "reply_topic",
        "track",
        "schema_version",
        "rerun",  # issue 29, additive
    ]
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_reply_schema_requires_every_field() -> None:
    """Every reply field is required (null where unknown, never absent)."""
    schema = json_schemas()[REPLY_SCHEMA_FILE]
    assert schema["required"] == list(Reply.model_fields)
    assert schema["additionalProperties"] is False


def test_statuses_are_the_spec_statuses() -> None:
    """Reply statuses are exactly those of spec §2, plus issue 29's ``rerun``."""
    assert [status.value for status in Status] == [
        "triggered",
        "duplicate",
        "rejected",
        "error",
        "completed",
        "rerun",
    ]


def test_models_are_frozen() -> None:
    """A validated request cannot be changed afterwards."""
    request = TriggerRequest(idempotency_key="k", dag_id="d")
    with pytest.raises(Exception, match="frozen"):
        request.dag_id = "other"  # type: ignore[misc]


def test_bounded_cuts_long_text() -> None:
    """Cutting with bounded keeps short text and cuts long text with an ellipsis."""
    assert bounded("abc", 3) == "abc"
    assert bounded("abcd", 3) == "abc…"


def test_schemas_are_valid_json() -> None:
    """Each stored schema parses as JSON and names the 2020-12 dialect."""
    for name in json_schemas():
        document = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
