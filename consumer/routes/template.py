"""Route expressions and templates: JMESPath, compiled once at start-up, evaluated per event.

An *expression* is one JMESPath expression (``Records[0].s3.object.key``). A *template* is a
string with expressions in braces: ``"s3://{Records[0].s3.bucket.name}/{Records[0].s3.object.key}"``;
``{{`` and ``}}`` are literal braces. A template that is a single ``{expr}`` keeps the
value's JSON type (a number stays a number); otherwise each value is spliced in as text
(strings as they are, anything else as compact JSON), and a null value fails the template:
``"order-{id}"`` must never quietly become ``"order-None"``.

Unknown function names are refused at compile time, as syntax errors are, so that a typo
stops the worker at start-up instead of failing every event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions as jmespath_functions
from jmespath.parser import ParsedResult

_KNOWN_FUNCTIONS = frozenset(jmespath_functions.Functions.FUNCTION_TABLE)
_QUOTES = {"'", '"', "`"}


class ExpressionError(Exception):
    """Raised when a route expression or template cannot be compiled or evaluated.

    Compile-time errors stop the worker at start-up; evaluation errors reject one event
    (``route_expression_failed``).
    """


@dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression.

    Attributes:
        text: the expression as written.
        parsed: the compiled form.
    """

    text: str
    parsed: ParsedResult

    @classmethod
    def compile(cls, text: str) -> Expression:
        """Compile ``text``.

        Raises:
            ExpressionError: a syntax error or an unknown function, with the position.
        """
        if not text.strip():
            raise ExpressionError("empty expression")
        try:
            parsed = jmespath.compile(text)
        except jmespath_errors.JMESPathError as exc:
            raise ExpressionError(f"bad JMESPath expression {text!r}: {_one_line(exc)}") from None
        unknown = sorted(set(_function_names(parsed.parsed)) - _KNOWN_FUNCTIONS)
        if unknown:
            raise ExpressionError(f"unknown function(s) {', '.join(unknown)} in {text!r}")
        return cls(text, parsed)

    def search(self, document: Any) -> Any:
        """Evaluate against ``document``; a missing field gives None (JMESPath's null).

        Raises:
            ExpressionError: a function met an argument of the wrong type.
        """
        try:
            return self.parsed.search(document)
        except jmespath_errors.JMESPathError as exc:
            raise ExpressionError(f"{self.text!r}: {_one_line(exc)}") from None


@dataclass(frozen=True)
class Template:
    """A string with ``{expression}`` parts.

    Attributes:
        text: the template as written.
        parts: literal strings and expressions, in order.
    """

    text: str
    parts: tuple[str | Expression, ...]

    @classmethod
    def compile(cls, text: str) -> Template:
        """Compile ``text``: split it into literals and expressions.

        Raises:
            ExpressionError: an unbalanced brace, an empty ``{}`` or a bad expression.
        """
        return cls(text, tuple(_split(text)))

    @property
    def expressions(self) -> tuple[Expression, ...]:
        """The template's expressions: none means it names no event field."""
        return tuple(part for part in self.parts if isinstance(part, Expression))

    def render(self, document: Any) -> Any:
        """Evaluate against ``document``.

        Returns:
            For a template that is one ``{expr}``: the value as it is (None when absent);
            otherwise the string with every value spliced in.

        Raises:
            ExpressionError: an expression failed, or gave null inside a longer template.
        """
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return self.parts[0].search(document)
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = part.search(document)
            if value is None:
                raise ExpressionError(f"{{{part.text}}} is null for this event")
            pieces.append(as_text(value))
        return "".join(pieces)


def as_text(value: Any) -> str:
    """A value as template text: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _split(text: str) -> Iterator[str | Expression]:
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text[i : i + 2] in ("{{", "}}"):
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise ExpressionError(f"unbalanced '}}' at position {i} (write '}}}}' for a brace)")
        if char == "{":
            end = _closing_brace(text, i)
            if literal:
                yield "".join(literal)
                literal = []
            expression = text[i + 1 : end]
            if not expression.strip():
                raise ExpressionError(f"empty '{{}}' at position {i}: it names nothing")
            yield Expression.compile(expression)
            i = end + 1
            continue
        literal.append(char)
        i += 1
    if literal:
        yield "".join(literal)


def _closing_brace(text: str, start: int) -> int:
    """The position of the brace closing the one at ``start`` (JMESPath may nest braces)."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in _QUOTES:
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ExpressionError(f"unclosed '{{' at position {start} (write '{{{{' for a brace)")


def _function_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            yield str(node.get("value"))
        for child in node.get("children", ()):
            yield from _function_names(child)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
