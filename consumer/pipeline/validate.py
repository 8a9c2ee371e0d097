"""Validate: a decoded JSON object → a ``TriggerRequest``, or a typed rejection (spec §2).

Order of checks, each with its own code: ``schema_version`` first (a future version may
have fields this worker does not know), then unknown fields, then the ``conf`` bounds
(before pydantic copies a large conf), then every field rule (``schema_violation``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from consumer.contract import (
    SCHEMA_VERSION,
    TriggerRequest,
    bounded,
    correlation_id_from_headers,
    is_correlation_id,
    rerun_id_from_headers,
)
from consumer.errors import ErrorCode, Rejected
from consumer.limits import DEFAULT_LIMITS, Limits
from consumer.pipeline.decode import MAX_REPORTED_ERRORS, error_entry
from consumer.record import Headers

SUPPORTED_SCHEMA_VERSIONS = (SCHEMA_VERSION,)
CONF_FIELD = "conf"

_VALUE_ERROR_PREFIX = "Value error, "
# built once: ``json.dumps`` with options builds an encoder per call
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def validate(
    payload: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS, *, headers: Headers = ()
) -> TriggerRequest:
    """Check a decoded message against wire contract v1 and build the request.

    Args:
        payload: the top-level JSON object, as ``decode`` returns it.
        limits: the ``conf`` size and depth bounds.
        headers: the record's headers; a valid ``correlation-id`` header is the default
            correlation id, a valid ``rerun-id`` header the default ``rerun``.

    Returns:
        The request, with ``logical_date`` in UTC and ``correlation_id`` always set (the
        field, else the header, else the idempotency key).

    Raises:
        Rejected: ``unsupported_schema_version``, ``unknown_fields``, ``conf_too_large``,
            ``schema_violation`` or ``not_before_too_far``.
    """
    _check_schema_version(payload)
    _check_known_fields(payload)
    conf = payload.get(CONF_FIELD)
    if isinstance(conf, dict):
        check_conf(conf, limits)
    data = dict(payload)
    if data.get("correlation_id") is None:
        # set before validation: a copy of the frozen model afterwards costs more than this
        default = correlation_id_from_headers(headers) or data.get("idempotency_key")
        if is_correlation_id(default):
            data["correlation_id"] = default
    if data.get("rerun") is None:
        # a re-driven record stamped by ``replay --rerun``: the header names the re-run
        rerun_id = rerun_id_from_headers(headers)
        if rerun_id is not None:
            data["rerun"] = {"id": rerun_id}
    try:
        request = TriggerRequest.model_validate(data)
    except ValidationError as exc:
        errors = [_error_entry(error) for error in exc.errors(include_url=False)]
        raise Rejected(
            ErrorCode.SCHEMA_VIOLATION,
            "invalid request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3]),
            {"errors": errors[:MAX_REPORTED_ERRORS]},
        ) from None
    if request.correlation_id is None:  # a valid key the correlation id rules refuse (none today)
        request = request.model_copy(update={"correlation_id": request.idempotency_key})
    if request.not_before is not None:
        _check_not_before(request.not_before, limits)
    return request


def _check_not_before(not_before: datetime, limits: Limits) -> None:
    ahead = not_before - datetime.now(UTC)
    if ahead > limits.max_not_before:
        raise Rejected(
            ErrorCode.NOT_BEFORE_TOO_FAR,
            f"not_before is {_days(ahead)} ahead; at most {_days(limits.max_not_before)} "
            "(MAX_NOT_BEFORE)",
            {"field": "not_before", "max_seconds": int(limits.max_not_before.total_seconds())},
        )


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:.1f} days"


def check_conf(conf: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> None:
    """Check ``conf`` against its depth and serialized-size bounds.

    Args:
        conf: the request's conf object.
        limits: ``max_conf_depth`` and ``max_conf_bytes``.

    Raises:
        Rejected: ``conf_too_large`` over a bound; ``schema_violation`` when the conf
            holds something JSON cannot carry.
    """
    depth = _depth(conf, limits.max_conf_depth)
    if depth > limits.max_conf_depth:
        raise Rejected(
            ErrorCode.CONF_TOO_LARGE,
            f"conf nests deeper than {limits.max_conf_depth} levels",
            {"field": CONF_FIELD, "max_depth": limits.max_conf_depth},
        )
    try:
        text = _COMPACT.encode(conf)
    except (TypeError, ValueError) as exc:
        raise Rejected(
            ErrorCode.SCHEMA_VIOLATION,
            f"invalid request: conf: {bounded(str(exc))}",
            {"errors": [error_entry([CONF_FIELD], "not_json", "holds a value JSON cannot carry")]},
        ) from None
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_conf_bytes:
        raise Rejected(
            ErrorCode.CONF_TOO_LARGE,
            f"conf is {size} bytes serialized, over the limit of {limits.max_conf_bytes}",
            {"field": CONF_FIELD, "size": size, "max_bytes": limits.max_conf_bytes},
        )


def _check_schema_version(payload: Mapping[str, Any]) -> None:
    version = payload.get("schema_version")
    # only a real integer is a version; "1", 1.0 or true are schema violations
    if type(version) is int and version not in SUPPORTED_SCHEMA_VERSIONS:
        shown = bounded(str(version), 40)
        raise Rejected(
            ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {shown} is not supported; this worker knows {SCHEMA_VERSION}",
            {"schema_version": shown, "supported": list(SUPPORTED_SCHEMA_VERSIONS)},
        )


def _check_known_fields(payload: Mapping[str, Any]) -> None:
    allowed = TriggerRequest.model_fields
    unknown = [bounded(str(name)) for name in payload if name not in allowed]
    if unknown:
        raise Rejected(
            ErrorCode.UNKNOWN_FIELDS,
            f"unknown field(s): {', '.join(unknown[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""),  # noqa: PLR2004
            {
                "fields": unknown[:MAX_REPORTED_ERRORS],
                "count": len(unknown),
                "allowed": list(allowed),
            },
        )


def _depth(value: object, bound: int) -> int:
    """Nesting depth of containers (``{}`` is 1); stops counting just past ``bound``."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if deepest > bound:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def _error_entry(error: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one pydantic error into a ``details.errors`` entry; never echoes the input."""
    message = str(error["msg"]).removeprefix(_VALUE_ERROR_PREFIX)
    loc = [part if isinstance(part, int) else bounded(str(part)) for part in error["loc"]]
    return error_entry(loc, str(error["type"]), bounded(message, 200))
