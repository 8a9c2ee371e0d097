"""Route configuration: [[routes]] compiled at start-up; problems name the route and field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from consumer.errors import ConfigError
from consumer.routes.config import RouteTable
from consumer.settings import load_settings

GOOD: dict[str, Any] = {"name": "r", "topics": ["t"], "dag_id": "d", "idempotency_key": "{id}"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dagid": "x"}, "route 'r': unknown key(s) dagid"),
        ({"match": "a[0"}, "route 'r': match: bad JMESPath expression"),
        ({"match": "nope(a)"}, "route 'r': match: unknown function(s) nope"),
        ({"idempotency_key": "constant"}, "route 'r': idempotency_key: the template names no"),
        ({"note": "x {} y"}, "route 'r': note: empty '{}'"),
        ({"note": "x {a"}, "route 'r': note: unclosed '{'"),
        ({"conf": 3}, "route 'r': conf: an expression string or a table"),
        ({"topics": []}, "route 'r': topics: a non-empty list"),
    ],
)
def test_a_bad_route_names_the_route_and_the_field(change: dict[str, Any], message: str) -> None:
    """Each problem is a ValueError whose text starts with the route and the field."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        RouteTable.parse([{**GOOD, **change}])


def test_names_must_be_unique_and_settings_cross_check_topics() -> None:
    """A name used twice, a route on the request topic, a stray route_topics: start-up errors."""
    with pytest.raises(ValueError, match="used twice: r"):
        RouteTable.parse([GOOD, GOOD])
    with pytest.raises(ConfigError, match="request topic 't' cannot be a route topic"):
        load_settings(routes=[GOOD], request_topic="t")
    with pytest.raises(ConfigError, match="route_topics: no route reads other"):
        load_settings(routes=[GOOD], route_topics={"other": {"unmatched": "ignore"}})


def test_a_good_table_lists_its_topics_in_order() -> None:
    """Topics come in first-mention order; for_topic finds the routes of one topic."""
    table = RouteTable.parse([GOOD, {**GOOD, "name": "s", "topics": ["u", "t"]}])
    assert table.topics() == ("t", "u")
    assert [route.name for route in table.for_topic("t")] == ["r", "s"]
