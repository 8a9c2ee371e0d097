"""Decode: message value bytes → a JSON object, refusing hostile input cheaply (spec §2).

Checks run cheapest first: the byte limit before anything is read, then UTF-8, then a linear
scan for nesting depth *before* ``json.loads`` (so deep nesting can never reach a
RecursionError), then the parse itself with hooks that refuse duplicate keys, NaN and
Infinity, numbers longer than ``MAX_NUMBER_CHARS`` and numbers a double cannot hold.
``decode_json`` applies the same checks to a value that need not be an object (the data of
a binary-mode CloudEvent).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any

from consumer.contract import MAX_ECHO_CHARS, TriggerRequest, bounded
from consumer.errors import ErrorCode, Rejected
from consumer.limits import DEFAULT_LIMITS, Limits

MAX_NUMBER_CHARS = 1000  # far beyond any real number; bounds int() and float() work
MAX_REPORTED_ERRORS = 20

_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING = re.compile(r'"[^"]*"')  # linear: applied after escapes are removed
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TOKEN = re.compile(r'"[^"]*"|[\[\]{}]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# a number that might overflow a double or cost quadratic int() time (or sits in a string):
# without 300 digits in a row, only a two-digit exponent reaches 1.8e308 (1e299 * 1e9 cannot)
_RISKY_NUMBER = re.compile(r"[0-9]{300}|[eE][+-]?[0-9]{2}")
_DEPTH_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_JSON_TYPES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def decode(value: bytes | None, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Turn a message value into a JSON object, or refuse it with a typed error.

    Args:
        value: the raw Kafka record value; None for a tombstone.
        limits: the byte and depth bounds.

    Returns:
        The top-level JSON object as a dict (no duplicate keys, only finite numbers).

    Raises:
        Rejected: ``message_too_large``, ``invalid_encoding``, ``invalid_json``,
            ``not_an_object``; for nesting beyond the bound ``conf_too_large`` (in ``conf``),
            ``schema_violation`` (in another field) or ``unknown_fields``; for a key that
            occurs twice in one object ``schema_violation``.
    """
    if value is None:
        raise Rejected(
            ErrorCode.INVALID_JSON, "the message has no value (tombstone)", {"reason": "null_value"}
        )
    if len(value) > limits.max_message_bytes:
        raise Rejected(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"the message is {len(value)} bytes, over the limit of {limits.max_message_bytes}",
            {"size": len(value), "limit": limits.max_message_bytes},
        )
    text = _decode_utf8(value)
    if _too_deep(text, limits.max_document_depth):
        _refuse_depth(_ESCAPE.sub("", text), limits)
    document = _parse(text)
    if not isinstance(document, dict):
        kind = _JSON_TYPES.get(type(document), "unknown")
        raise Rejected(
            ErrorCode.NOT_AN_OBJECT,
            f"the message is a JSON {kind}, not an object",
            {"type": kind},
        )
    return document


def decode_json(value: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse any JSON value (object, array, string, number...) with ``decode``'s checks.

    The value is held to the same nesting bound as a whole message, checked before the
    parse; the message-size limit is the caller's to check.

    Args:
        value: UTF-8 JSON text.
        limits: the depth bound (``max_document_depth``).

    Returns:
        The parsed value (objects without duplicate keys, only finite numbers).

    Raises:
        Rejected: ``invalid_encoding`` (not UTF-8, an unpaired surrogate escape);
            ``invalid_json`` for invalid syntax, NaN or Infinity, a number too long or out
            of range, and nesting beyond the bound (reason ``too_deep``);
            ``schema_violation`` for a key that occurs twice in one object.
    """
    text = _decode_utf8(value)
    bound = limits.max_document_depth
    if _too_deep(text, bound):
        raise Rejected(
            ErrorCode.INVALID_JSON,
            f"the value nests deeper than {bound} levels",
            {"reason": "too_deep", "max_depth": bound},
        )
    return _parse(text)


def _decode_utf8(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(
            ErrorCode.INVALID_ENCODING,
            f"the message is not UTF-8: {exc.reason} at byte {exc.start}",
            {"position": exc.start, "reason": exc.reason},
        ) from None


def _too_deep(text: str, bound: int) -> bool:
    """Whether brackets outside strings nest deeper than ``bound``: a linear scan, no parse."""
    if text.count("[") + text.count("{") <= bound:
        return False  # fast path: not enough brackets to go too deep
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    return max(accumulate(map(_DEPTH_DELTA.__getitem__, brackets)), default=0) > bound


def _refuse_depth(unescaped: str, limits: Limits) -> None:
    """Name the top-level field that nests too deep; only runs for refused input."""
    bound = limits.max_document_depth
    details: dict[str, Any] = {"max_depth": limits.max_conf_depth}
    if not unescaped.lstrip().startswith("{"):
        raise Rejected(
            ErrorCode.NOT_AN_OBJECT,
            f"the message is not a JSON object (and nests deeper than {bound} levels)",
            {"type": "array", "max_depth": bound},
        )
    depth = 0
    field = ""
    for token in _tokens(unescaped):
        if token.startswith('"'):
            if depth == 1:
                field = token[1:-1]  # in the top-level object, the last string names the value
            continue
        depth += _DEPTH_DELTA[token]
        if depth > bound:
            break
    if field == "conf":
        raise Rejected(
            ErrorCode.CONF_TOO_LARGE,
            f"conf nests deeper than {limits.max_conf_depth} levels",
            {**details, "field": "conf"},
        )
    if field in TriggerRequest.model_fields:
        raise Rejected(
            ErrorCode.SCHEMA_VIOLATION,
            f"field {field} nests deeper than any valid value",
            {"errors": [error_entry([field], "too_deep", "nests deeper than any valid value")]},
        )
    raise Rejected(
        ErrorCode.UNKNOWN_FIELDS,
        f"unknown field: {bounded(field)}",
        {"fields": [bounded(field)]},
    )


def _tokens(unescaped: str) -> Iterator[str]:
    for match in _TOKEN.finditer(unescaped):
        yield match.group()


class _DuplicateKeys(dict[str, Any]):
    """An object that had repeated keys; found and reported after the parse, with its path."""

    def __init__(self, pairs: list[tuple[str, Any]], duplicates: list[str]) -> None:
        super().__init__(pairs)
        self.duplicates = duplicates


class _RepeatedKeyError(Exception):
    """A key occurs twice in one object: the fast parse stops, the full one reports them."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _RepeatedKeyError
    return result


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen: set[str] = set()
    duplicates: list[str] = []
    for key, _ in pairs:
        if key in seen:
            duplicates.append(key)
        seen.add(key)
    return _DuplicateKeys(pairs, duplicates)


def _refuse_constant(name: str) -> float:
    raise Rejected(
        ErrorCode.INVALID_JSON,
        f"{name} is not JSON",
        {"reason": "non_finite_number", "value": name},
    )


def _int(literal: str) -> int:
    _check_number_length(literal)
    return int(literal)


def _float(literal: str) -> float:
    _check_number_length(literal)
    number = float(literal)
    if not math.isfinite(number):
        raise Rejected(
            ErrorCode.INVALID_JSON,
            f"the number {bounded(literal, 40)} is out of range",
            {"reason": "number_out_of_range", "value": bounded(literal, 40)},
        )
    return number


def _check_number_length(literal: str) -> None:
    if len(literal) > MAX_NUMBER_CHARS:
        raise Rejected(
            ErrorCode.INVALID_JSON,
            f"a number has {len(literal)} characters, over the limit of {MAX_NUMBER_CHARS}",
            {"reason": "number_too_long", "limit": MAX_NUMBER_CHARS},
        )


def _decoder(
    object_pairs_hook: Callable[[list[tuple[str, Any]]], dict[str, Any]], *, check_numbers: bool
) -> json.JSONDecoder:
    # number hooks cost a Python call per number: only used when a number could be huge
    numbers: dict[str, Any] = {"parse_int": _int, "parse_float": _float} if check_numbers else {}
    return json.JSONDecoder(
        object_pairs_hook=object_pairs_hook, parse_constant=_refuse_constant, **numbers
    )


# Built once, per whether numbers need checking (``json.loads`` with hooks builds a decoder
# per call). A fast decoder stops at the first repeated key; only then does a reporting one
# parse again, so that every repeated key is named with its path.
_FAST = {check: _decoder(_unique_object, check_numbers=check) for check in (False, True)}
_REPORTING = {check: _decoder(_object, check_numbers=check) for check in (False, True)}


def _parse(text: str) -> Any:
    risky_numbers = _RISKY_NUMBER.search(text) is not None
    repeated = False
    try:
        try:
            document = _FAST[risky_numbers].decode(text)
        except _RepeatedKeyError:
            repeated = True
            document = _REPORTING[risky_numbers].decode(text)
    except json.JSONDecodeError as exc:
        raise Rejected(
            ErrorCode.INVALID_JSON,
            f"the message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            {
                "reason": exc.msg,
                "line": exc.lineno,
                "column": exc.colno,
                "position": exc.pos,
                "near": bounded(text[max(0, exc.pos - 20) : exc.pos + 20], 40),
            },
        ) from None
    except (RecursionError, ValueError):
        # the depth scan and the number pre-check make these unreachable; a last guard
        raise Rejected(
            ErrorCode.INVALID_JSON, "the message cannot be parsed safely", {"reason": "unsafe"}
        ) from None
    check_strings = _SURROGATE_ESCAPE.search(text) is not None
    if repeated or check_strings:
        _check_values(document, check_strings=check_strings)
    return document


def _check_values(document: Any, *, check_strings: bool) -> None:
    """Walk the parsed document once for repeated keys and unpaired surrogate escapes."""
    stack: list[tuple[list[str | int], Any]] = [([], document)]
    errors: list[dict[str, Any]] = []
    surrogate_at: list[str | int] | None = None
    while stack and len(errors) < MAX_REPORTED_ERRORS:
        path, node = stack.pop()
        if isinstance(node, _DuplicateKeys):
            errors.extend(
                error_entry([*path, key], "duplicate_key", "the key occurs more than once")
                for key in node.duplicates
            )
        if isinstance(node, dict):
            stack.extend(([*path, key], child) for key, child in reversed(node.items()))
            if check_strings and surrogate_at is None and any(map(_has_surrogate, node)):
                surrogate_at = path
        elif isinstance(node, list):
            stack.extend(
                ([*path, index], child) for index, child in reversed(list(enumerate(node)))
            )
        elif check_strings and surrogate_at is None and isinstance(node, str):
            surrogate_at = path if _has_surrogate(node) else None
    if errors:
        raise Rejected(
            ErrorCode.SCHEMA_VIOLATION,
            "a JSON object repeats a key: " + ", ".join(e["field"] for e in errors[:5]),
            {"errors": errors[:MAX_REPORTED_ERRORS]},
        )
    if surrogate_at is not None:
        field = _field_name(surrogate_at)
        raise Rejected(
            ErrorCode.INVALID_ENCODING,
            f"an unpaired UTF-16 surrogate escape is not Unicode text (at {field or 'top'})",
            {"reason": "unpaired_surrogate", "field": field},
        )


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _field_name(path: list[str | int]) -> str:
    return bounded(".".join(str(part) for part in path), 2 * MAX_ECHO_CHARS)


def error_entry(path: list[str | int], reason: str, message: str) -> dict[str, Any]:
    """Build one entry of ``details.errors``: where, why (a stable reason) and a sentence.

    Args:
        path: the field path from the top-level object (keys and list indexes).
        reason: a stable snake_case reason (``duplicate_key``, ``string_type``...).
        message: a sentence for people.

    Returns:
        ``{"field": "conf.a.0", "loc": ["conf", "a", 0], "reason": ..., "message": ...}``,
        with every key cut to a bounded length.
    """
    loc = [bounded(part) if isinstance(part, str) else part for part in path]
    return {"field": _field_name(loc), "loc": loc, "reason": reason, "message": message}
