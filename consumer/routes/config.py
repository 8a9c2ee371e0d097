"""Route configuration: the ``[[routes]]`` tables of the config file, checked at start-up.

Every expression and template is compiled here, once; any problem (an unknown key, a bad
expression, a template naming nothing) is a ``ValueError`` naming the route and the field,
which settings turn into a start-up error (exit 2). See the README's "Routes" section.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import core_schema

from consumer.routes.template import Expression, ExpressionError, Template

ROUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
REQUIRED = ("name", "topics", "dag_id")
TEMPLATE_FIELDS: tuple[str, ...] = (
    "dag_id",
    "idempotency_key",
    "logical_date",
    "note",
    "reply_topic",
    "correlation_id",
    "rerun",
)
KNOWN_FIELDS = frozenset(
    {*REQUIRED, *TEMPLATE_FIELDS, "match", "conf", "track", "rerun_only_failed"}
)

ConfSpec: TypeAlias = "Expression | dict[str, ConfSpec] | int | float | bool"
"""How a route builds ``conf``: one expression giving an object, or a table of them."""


@dataclass(frozen=True)
class Route:
    """One route: which events it takes and the trigger request it builds from each.

    Attributes:
        name: names the route in keys, replies, errors and metrics.
        topics: the topics it reads events from.
        match: which events it takes; None takes every event of its topics.
        dag_id: the DAG to trigger.
        idempotency_key: the key (prefixed with the route name); None: a CloudEvent's
            ``source`` and ``id``.
        conf: how to build the run's conf; None gives ``{}``.
        logical_date: optional RFC 3339 timestamp template.
        note: optional note template.
        track: whether to track the run (a constant or a template).
        reply_topic: optional reply topic template.
        correlation_id: optional correlation id template.
        rerun: optional template of a re-run id (issue 29): the derived request re-runs
            its key's run, once per id; a null result makes a plain request.
        rerun_only_failed: with ``rerun``, clear only the run's failed tasks.
    """

    name: str
    topics: tuple[str, ...]
    dag_id: Template
    match: Expression | None = None
    idempotency_key: Template | None = None
    conf: ConfSpec | None = None
    logical_date: Template | None = None
    note: Template | None = None
    track: bool | Template = False
    reply_topic: Template | None = None
    correlation_id: Template | None = None
    rerun: Template | None = None
    rerun_only_failed: bool = False


class TopicOptions(BaseModel):
    """Per-topic settings of the topics routes read (``[route_topics."TOPIC"]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # an event no route matches: dead-lettered with no_route_matched, or only counted
    unmatched: Literal["dead_letter", "ignore"] = "dead_letter"


@dataclass(frozen=True)
class RouteTable:
    """Every configured route, in file order.

    Attributes:
        routes: the routes.
    """

    routes: tuple[Route, ...] = field(default_factory=tuple)

    def topics(self) -> tuple[str, ...]:
        """Every topic some route reads, in first-mention order."""
        return tuple(dict.fromkeys(topic for route in self.routes for topic in route.topics))

    def for_topic(self, topic: str) -> tuple[Route, ...]:
        """The routes that read ``topic``, in file order."""
        return tuple(route for route in self.routes if topic in route.topics)

    def __bool__(self) -> bool:
        """True when at least one route is configured."""
        return bool(self.routes)

    def __repr__(self) -> str:
        """The route names (the defaults table of ``run --help`` shows ``[]``)."""
        return repr([route.name for route in self.routes])

    @classmethod
    def parse(cls, raw: Any) -> RouteTable:
        """Build the table from the config file's ``[[routes]]`` (or a JSON string).

        Raises:
            ValueError: naming the route and the field of every problem.
        """
        if isinstance(raw, RouteTable):
            return raw
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else []
            except ValueError:
                raise ValueError("routes: not a JSON array of route objects") from None
        if not isinstance(raw, list | tuple):
            raise ValueError("routes: must be an array of tables ([[routes]])")
        routes = tuple(parse_route(entry, index) for index, entry in enumerate(raw))
        names = [route.name for route in routes]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"routes: name(s) used twice: {', '.join(twice)}")
        return cls(routes)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate with ``parse`` (settings hold the compiled table)."""
        return core_schema.no_info_plain_validator_function(cls.parse)


def parse_route(raw: Any, index: int) -> Route:
    """Build one route from its table.

    Args:
        raw: the ``[[routes]]`` table.
        index: its position, to name a route that has no usable name.

    Raises:
        ValueError: ``route 'NAME': FIELD: problem``.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"routes[{index}]: must be a table")
    name = raw.get("name")
    where = f"route {name!r}" if isinstance(name, str) else f"routes[{index}]"
    unknown = sorted(str(key) for key in raw if key not in KNOWN_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise ValueError(f"{where}: {', '.join(missing)}: required")
    if not isinstance(name, str) or not ROUTE_NAME.fullmatch(name):
        raise ValueError(f"{where}: name: 1-64 characters of [A-Za-z0-9_.-]")
    try:
        return _build(name, raw)
    except _FieldError as exc:
        raise ValueError(f"{where}: {exc.field}: {exc.problem}") from None


class _FieldError(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _build(name: str, raw: Mapping[str, Any]) -> Route:
    topics = raw["topics"]
    if isinstance(topics, str):
        topics = [topics]
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        raise _FieldError("topics", "a non-empty list of topic names")
    templates = {key: _template(key, raw[key]) for key in TEMPLATE_FIELDS if key in raw}
    key = templates.get("idempotency_key")
    if key is not None and not key.expressions:
        raise _FieldError(
            "idempotency_key",
            "the template names no event field: every event would be the same request",
        )
    track = raw.get("track", False)
    if not isinstance(track, bool):
        track = _template("track", track)
    only_failed = raw.get("rerun_only_failed", False)
    if not isinstance(only_failed, bool):
        raise _FieldError("rerun_only_failed", "must be true or false")
    if only_failed and "rerun" not in raw:
        raise _FieldError("rerun_only_failed", "needs a rerun template")
    return Route(
        name=name,
        topics=tuple(topics),
        match=_expression("match", raw["match"]) if "match" in raw else None,
        conf=_conf("conf", raw["conf"]) if "conf" in raw else None,
        track=track,
        rerun_only_failed=only_failed,
        **templates,
    )


def _template(field: str, value: Any) -> Template:
    if not isinstance(value, str):
        raise _FieldError(field, "must be a string template")
    try:
        return Template.compile(value)
    except ExpressionError as exc:
        raise _FieldError(field, str(exc)) from None


def _expression(field: str, value: Any) -> Expression:
    if not isinstance(value, str):
        raise _FieldError(field, "must be a JMESPath expression string")
    try:
        return Expression.compile(value)
    except ExpressionError as exc:
        raise _FieldError(field, str(exc)) from None


def _conf(field: str, value: Any) -> ConfSpec:
    """A string is one expression; a table maps names to expressions (or constants)."""
    if isinstance(value, str):
        return _expression(field, value)
    if isinstance(value, bool | int | float):
        if field == "conf":
            raise _FieldError(field, "an expression string or a table")
        return value
    if isinstance(value, Mapping):
        return {str(k): _conf(f"{field}.{k}", v) for k, v in value.items()}
    raise _FieldError(field, "an expression string, a number, a boolean or a table")
