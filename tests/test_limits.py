"""Limits: the defaults of spec §2 and refusal of impossible bounds."""

from __future__ import annotations

import pytest

from consumer.limits import DEFAULT_LIMITS, Limits


def test_defaults_are_the_spec_defaults() -> None:
    """Defaults: 1 MiB messages, 64 KiB conf, 32 levels of conf."""
    expected = Limits(max_message_bytes=1024 * 1024, max_conf_bytes=64 * 1024, max_conf_depth=32)
    assert expected == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.max_document_depth == 33


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bounds_must_be_positive_integers(bad: object) -> None:
    """A zero, negative, boolean or fractional bound is refused at construction."""
    with pytest.raises(ValueError, match="positive integer"):
        Limits(max_conf_depth=bad)  # type: ignore[arg-type]
