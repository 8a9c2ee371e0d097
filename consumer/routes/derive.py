"""Derive: an event and the routes of its topic → one ordinary v1 trigger request per match.

Each derived request is built here unscreened; the pipeline then screens it as a native one
(validate → policy; the DAG allow-list still applies) and it goes on through dedup →
trigger → reply/DLQ. Its key is the
route's name, a colon and the route's ``idempotency_key`` template (a CloudEvent's
``source`` and ``id`` by default), so that one event matched by two routes is two requests;
a key over 256 characters keeps its first 215 and a hash of the whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from consumer.contract import MAX_IDEMPOTENCY_KEY_CHARS
from consumer.errors import ErrorCode, Rejected
from consumer.limits import Limits
from consumer.pipeline.screen import attempt
from consumer.record import DerivedRecord, InboundRecord
from consumer.routes.config import ConfSpec, Route, RouteTable, TopicOptions
from consumer.routes.event import Event, read_event
from consumer.routes.template import Expression, ExpressionError, Template, as_text

KEPT_KEY_CHARS = 215  # + "~sha256:" + 32 hex digits = 255, within the key's 256
OPTIONAL_TEXT_FIELDS = ("logical_date", "note", "reply_topic", "correlation_id")

OnUnmatched = Callable[[str, str], None]
"""Told (topic, "dead_lettered" | "ignored" | "tombstone") of every record that derives nothing."""
TOMBSTONE = "tombstone"


Build = Callable[[], dict[str, Any]]
"""Builds a derived request's payload (raises ``Rejected`` naming the route and field)."""


@dataclass(frozen=True)
class Expansion:
    """What one event record became.

    Attributes:
        derived: per matching route, its record and how to build its request (or why its
            ``match`` failed on the event); the pipeline screens what is built.
        refusal: why the record itself was refused (unreadable, not a valid CloudEvent,
            no route matched it); None otherwise. Neither: an ignored unmatched event.
    """

    derived: tuple[tuple[DerivedRecord, Build | Rejected], ...] = ()
    refusal: Rejected | None = None


@dataclass(frozen=True)
class RouteVerdict:
    """What one route made of an event (``routes check``).

    Attributes:
        route: the route's name.
        matched: whether its ``match`` took the event.
        payload: the trigger request it built (unscreened), when it matched and building
            worked.
        error: why it failed (its match or a field's expression; validation or policy once
            ``routes check`` screened the payload), or None.
    """

    route: str
    matched: bool
    payload: dict[str, Any] | None = None
    error: Rejected | None = None


@dataclass
class Router:
    """Expands records of route topics into trigger requests."""

    table: RouteTable
    topic_options: Mapping[str, TopicOptions] = field(default_factory=dict)
    on_unmatched: OnUnmatched | None = None
    trace_context: bool = True  # False: trace context is neither read nor passed on

    def reads(self, topic: str) -> bool:
        """Whether ``topic`` is a route topic."""
        return bool(self.table.for_topic(topic))

    def expand(self, record: InboundRecord, limits: Limits) -> Expansion:
        """Every request the record's event derives, unscreened.

        Args:
            record: a record of a route topic.
            limits: size and depth bounds of the event.

        Returns:
            The expansion; never raises ``Rejected``.
        """
        if record.value is None:  # a tombstone (a compacted topic's delete) is not an event
            if self.on_unmatched is not None:
                self.on_unmatched(record.topic, TOMBSTONE)
            return Expansion()
        routes = self.table.for_topic(record.topic)
        event = attempt(read_event, record, limits)
        if isinstance(event, Rejected):
            return Expansion(refusal=event)
        trace = event.trace if self.trace_context else None
        derived: list[tuple[DerivedRecord, Build | Rejected]] = []
        for route in routes:
            matched = _match(route, event)
            if matched is False:
                continue
            view = DerivedRecord(**_fields(record), route=route.name, trace=trace)
            built = matched if isinstance(matched, Rejected) else partial(derive, route, event)
            derived.append((view, built))
        if not derived:
            return self._unmatched(record.topic, routes)
        return Expansion(derived=tuple(derived))

    def explain(
        self, record: InboundRecord, limits: Limits, *, any_topic: bool = False
    ) -> tuple[list[RouteVerdict], Rejected | None]:
        """What every route of the record's topic (or of any topic) makes of its event.

        The payloads are unscreened: ``routes check`` screens them as the pipeline does.

        Returns:
            One verdict per route considered, and why the event itself was refused.
        """
        routes = self.table.routes if any_topic else self.table.for_topic(record.topic)
        event = attempt(read_event, record, limits)
        if isinstance(event, Rejected):
            return [], event
        verdicts = []
        for route in routes:
            matched = _match(route, event)
            if not isinstance(matched, bool):
                verdicts.append(RouteVerdict(route.name, matched=False, error=matched))
                continue
            if not matched:
                verdicts.append(RouteVerdict(route.name, matched=False))
                continue
            built = attempt(derive, route, event)
            if isinstance(built, Rejected):
                verdicts.append(RouteVerdict(route.name, True, error=built))
            else:
                verdicts.append(RouteVerdict(route.name, True, built))
        return verdicts, None

    def _unmatched(self, topic: str, routes: tuple[Route, ...]) -> Expansion:
        ignore = self.topic_options.get(topic, TopicOptions()).unmatched == "ignore"
        if self.on_unmatched is not None:
            self.on_unmatched(topic, "ignored" if ignore else "dead_lettered")
        if ignore:
            return Expansion()
        names = [route.name for route in routes]
        return Expansion(
            refusal=Rejected(
                ErrorCode.NO_ROUTE_MATCHED,
                f"no route of topic {topic!r} matches this event",
                {"topic": topic, "routes": names},
            )
        )


def derive(route: Route, event: Event) -> dict[str, Any]:
    """Build the route's trigger request from the event (before validation).

    Raises:
        Rejected: ``route_expression_failed``, naming the route and the field.
    """
    document = event.document
    payload: dict[str, Any] = {
        "idempotency_key": _key(route, event),
        "dag_id": _text(route, "dag_id", route.dag_id, document, required=True),
        "conf": _conf(route, "conf", route.conf, document) if route.conf is not None else {},
    }
    for name in OPTIONAL_TEXT_FIELDS:
        template: Template | None = getattr(route, name)
        if template is not None:
            value = _text(route, name, template, document, required=False)
            if value is not None:
                payload[name] = value
    if isinstance(route.track, Template):
        track = _evaluate(route, "track", route.track.render, document)
        if not isinstance(track, bool):
            raise _failure(route, "track", "must give true or false")
        payload["track"] = track
    elif route.track:
        payload["track"] = True
    if route.rerun is not None:
        rerun_id = _text(route, "rerun", route.rerun, document, required=False)
        if rerun_id is not None:
            payload["rerun"] = {"id": rerun_id, "only_failed": route.rerun_only_failed}
    return payload


def cloudevent_key(document: Mapping[str, Any]) -> str:
    """A CloudEvent's default key: ``source#id`` (unique together, CloudEvents §3.1.1).

    ``%`` and ``#`` in the source are percent-escaped, so the pair reads back unambiguously.
    """
    source = str(document.get("source", "")).replace("%", "%25").replace("#", "%23")
    return f"{source}#{document.get('id', '')}"


def _failure(route: Route, field_name: str, problem: str) -> Rejected:
    return Rejected(
        ErrorCode.ROUTE_EXPRESSION_FAILED,
        f"route {route.name!r}: {field_name}: {problem}",
        {"route": route.name, "field": field_name, "reason": problem},
    )


def _match(route: Route, event: Event) -> bool | Rejected:
    """Whether the route takes the event, or why its ``match`` failed on it."""
    if route.match is None:
        return True
    try:
        return _truthy(route.match.search(event.document))
    except ExpressionError as exc:
        return _failure(route, "match", str(exc))


def _truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, "", [] and {} are false; every number is true."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict) and not value)


def _evaluate(route: Route, field_name: str, evaluate: Callable[[Any], Any], document: Any) -> Any:
    try:
        return evaluate(document)
    except ExpressionError as exc:
        raise _failure(route, field_name, str(exc)) from None


def _text(route: Route, name: str, template: Template, document: Any, *, required: bool) -> Any:
    value = _evaluate(route, name, template.render, document)
    if value is None:
        if required:
            raise _failure(route, name, f"{template.text!r} is null for this event")
        return None
    return as_text(value)


def _key(route: Route, event: Event) -> str:
    if route.idempotency_key is not None:
        key = _text(route, "idempotency_key", route.idempotency_key, event.document, required=True)
    elif event.is_cloudevent:
        key = cloudevent_key(event.document)
    else:
        problem = "not set, and the event is not a CloudEvent (no source and id to use)"
        raise _failure(route, "idempotency_key", problem)
    full = f"{route.name}:{key}"
    if len(full) <= MAX_IDEMPOTENCY_KEY_CHARS:
        return full
    digest = hashlib.sha256(full.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{full[:KEPT_KEY_CHARS]}~sha256:{digest}"


def _conf(route: Route, name: str, spec: ConfSpec, document: Any) -> Any:
    if isinstance(spec, Expression):
        value = _evaluate(route, name, spec.search, document)
        if name == "conf" and not isinstance(value, dict):
            raise _failure(route, name, f"{spec.text!r} must give an object")
        return value
    if isinstance(spec, dict):
        return {key: _conf(route, f"{name}.{key}", sub, document) for key, sub in spec.items()}
    return spec


def _fields(record: InboundRecord) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": record.key,
        "value": record.value,
        "headers": record.headers,
    }
