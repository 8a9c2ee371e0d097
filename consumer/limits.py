"""Limits: the size and depth bounds that keep hostile messages cheap to refuse (spec §2, §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_MAX_CONF_BYTES = 64 * 1024
DEFAULT_MAX_CONF_DEPTH = 32
DEFAULT_MAX_NOT_BEFORE = timedelta(days=7)


@dataclass(frozen=True)
class Limits:
    """Bounds on one request message; every stage that reads input honours them.

    Attributes:
        max_message_bytes: the largest message value accepted, in bytes (``message_too_large``).
        max_conf_bytes: the largest ``conf``, as compact UTF-8 JSON, in bytes (``conf_too_large``).
        max_conf_depth: the deepest ``conf`` nesting accepted; ``{}`` is depth 1,
            ``{"a": []}`` depth 2 (``conf_too_large``).
        max_not_before: how far ahead a request's ``not_before`` may be (``not_before_too_far``).
    """

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_conf_bytes: int = DEFAULT_MAX_CONF_BYTES
    max_conf_depth: int = DEFAULT_MAX_CONF_DEPTH
    max_not_before: timedelta = DEFAULT_MAX_NOT_BEFORE

    def __post_init__(self) -> None:
        """Refuse bounds that would make every message invalid.

        Raises:
            ValueError: when a bound is not a positive integer.
        """
        for name in ("max_message_bytes", "max_conf_bytes", "max_conf_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.max_not_before <= timedelta(0):
            raise ValueError(f"max_not_before must be positive, not {self.max_not_before}")

    @property
    def max_document_depth(self) -> int:
        """The deepest nesting a whole message may have: the top-level object holds ``conf``."""
        return self.max_conf_depth + 1


DEFAULT_LIMITS = Limits()
