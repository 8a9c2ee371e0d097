"""Templates: literals and JMESPath expressions; single expressions keep their type."""

from __future__ import annotations

import pytest

from consumer.routes.template import ExpressionError, Template

DOC = {"a": {"b": 7}, "s": "x", "list": [1, 2], "braces": {"k": 1}}


def test_templates_splice_text_and_keep_single_values_typed() -> None:
    """Text parts join as strings; "{expr}" alone keeps numbers, lists and null."""
    assert Template.compile("n={a.b}/{s}").render(DOC) == "n=7/x"
    assert Template.compile("{a.b}").render(DOC) == 7
    assert Template.compile("{list}").render(DOC) == [1, 2]
    assert Template.compile("{missing}").render(DOC) is None
    assert Template.compile("{{literal}} {s}").render(DOC) == "{literal} x"
    assert Template.compile("{ {k: braces.k} }").render(DOC) == {"k": 1}


def test_null_inside_a_longer_template_fails() -> None:
    """A missing field never becomes the text 'None'."""
    with pytest.raises(ExpressionError, match="is null for this event"):
        Template.compile("id-{missing}").render(DOC)


def test_a_type_error_at_evaluation_is_an_expression_error() -> None:
    """A function given the wrong type fails the event, not the worker."""
    with pytest.raises(ExpressionError):
        Template.compile("{length(a.b)}").render(DOC)
