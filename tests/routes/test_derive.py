"""Derive: events and routes → screened v1 requests; fan-out, unmatched and failures."""

from __future__ import annotations

import json

import pytest

from consumer.contract import TriggerRequest
from consumer.errors import ErrorCode, Rejected
from consumer.limits import DEFAULT_LIMITS
from consumer.pipeline import Refusal, screen
from consumer.pipeline.policy import Policy
from consumer.record import InboundRecord
from consumer.routes.config import RouteTable, TopicOptions
from consumer.routes.derive import Expansion, Router

POLICY = Policy.from_lists("etl_*")
ROUTES = RouteTable.parse(
    [
        {
            "name": "a",
            "topics": ["ev"],
            "match": "k == 'x'",
            "dag_id": "etl_a",
            "idempotency_key": "{id}",
            "conf": {"id": "id"},
        },
        {
            "name": "b",
            "topics": ["ev"],
            "match": "k == 'x'",
            "dag_id": "etl_b",
            "idempotency_key": "{id}",
        },
        {"name": "ce", "topics": ["ce"], "dag_id": "other"},
    ]
)


def _record(topic: str, value: object, *headers: tuple[str, bytes]) -> InboundRecord:
    return InboundRecord(topic, 0, 5, None, None, json.dumps(value).encode(), tuple(headers))


def screened(expansion: Expansion, policy: Policy = POLICY) -> list[TriggerRequest | Refusal]:
    """Each derived request screened as the pipeline screens it."""
    return [
        Refusal(built, None, None)
        if isinstance(built, Rejected)
        else screen(None, DEFAULT_LIMITS, policy, read=built)
        for _, built in expansion.derived
    ]


def test_an_event_matched_by_two_routes_gives_two_keyed_requests() -> None:
    """Each matching route builds its own request, its key prefixed by the route name."""
    expansion = Router(ROUTES).expand(_record("ev", {"k": "x", "id": 7}), DEFAULT_LIMITS)
    requests = screened(expansion)
    assert all(isinstance(r, TriggerRequest) for r in requests)
    assert [(r.idempotency_key, r.dag_id) for r in requests if isinstance(r, TriggerRequest)] == [
        ("a:7", "etl_a"),
        ("b:7", "etl_b"),
    ]
    assert [record.route for record, _ in expansion.derived] == ["a", "b"]


def test_unmatched_events_are_refused_or_ignored_per_topic_and_counted() -> None:
    """no_route_matched by default; ignored (no items) with unmatched = ignore."""
    seen: list[tuple[str, str]] = []
    record = _record("ev", {"k": "y"})
    refused = Router(ROUTES, on_unmatched=lambda *a: seen.append(a)).expand(record, DEFAULT_LIMITS)
    assert refused.refusal is not None and refused.refusal.code is ErrorCode.NO_ROUTE_MATCHED
    ignoring = Router(
        ROUTES, {"ev": TopicOptions(unmatched="ignore")}, on_unmatched=lambda *a: seen.append(a)
    )
    assert ignoring.expand(record, DEFAULT_LIMITS).derived == ()
    assert seen == [("ev", "dead_lettered"), ("ev", "ignored")]


def test_a_tombstone_on_a_route_topic_derives_nothing_and_is_counted() -> None:
    """A null value is no event: no refusal (whatever ``unmatched`` says), counted as such."""
    seen: list[tuple[str, str]] = []
    tombstone = InboundRecord("ev", 0, 6, None, b"row-1", None)
    expansion = Router(ROUTES, on_unmatched=lambda *a: seen.append(a)).expand(
        tombstone, DEFAULT_LIMITS
    )
    assert expansion.refusal is None
    assert expansion.derived == ()
    assert seen == [("ev", "tombstone")]


def test_policy_still_applies_and_cloudevents_default_to_source_and_id() -> None:
    """A derived DAG outside the allow-list is dag_not_allowed; a CloudEvent keys by source#id."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"9"),
        ("ce_source", b"/a#b"),
        ("ce_type", b"t"),
    ]
    expansion = Router(ROUTES).expand(_record("ce", {}, *headers), DEFAULT_LIMITS)
    (refused,) = screened(expansion)
    assert isinstance(refused, Refusal) and refused.rejected.code is ErrorCode.DAG_NOT_ALLOWED
    (allowed,) = screened(expansion, Policy.from_lists("*"))
    assert isinstance(allowed, TriggerRequest) and allowed.idempotency_key == "ce:/a%23b#9"


def test_a_field_that_fails_on_one_event_is_route_expression_failed() -> None:
    """A null required field is refused naming the route and the field."""
    (refused, _) = screened(Router(ROUTES).expand(_record("ev", {"k": "x"}), DEFAULT_LIMITS))
    assert isinstance(refused, Refusal)
    assert refused.rejected.code is ErrorCode.ROUTE_EXPRESSION_FAILED
    assert refused.rejected.details["route"] == "a"
    assert refused.rejected.details["field"] == "idempotency_key"


def test_a_route_with_a_rerun_template_derives_rerun_requests() -> None:
    """``rerun`` names the re-run id from the event; a null result makes a plain request."""
    routes = RouteTable.parse(
        [
            {
                "name": "fix",
                "topics": ["fixes"],
                "dag_id": "etl_a",
                "idempotency_key": "{id}",
                "rerun": "{fix}",
                "rerun_only_failed": True,
            }
        ]
    )
    router = Router(routes)
    policy = Policy(dag_patterns=("etl_*",), rerun_patterns=("etl_*",))
    rerun, plain = (
        screened(router.expand(_record("fixes", event), DEFAULT_LIMITS), policy)[0]
        for event in ({"id": "1", "fix": "bug-7"}, {"id": "2", "fix": None})
    )
    assert isinstance(rerun, TriggerRequest)
    assert isinstance(plain, TriggerRequest)
    assert rerun.rerun is not None
    assert (rerun.rerun.id, rerun.rerun.only_failed) == ("bug-7", True)
    assert plain.rerun is None


def test_rerun_only_failed_needs_a_rerun_template() -> None:
    """``rerun_only_failed`` alone is a configuration error, named."""
    raw = [{"name": "x", "topics": ["t"], "dag_id": "d", "rerun_only_failed": True}]
    with pytest.raises(ValueError, match="rerun_only_failed"):
        RouteTable.parse(raw)
