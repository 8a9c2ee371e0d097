"""The shared parts of every check: setting names, skipped checks, error text."""

from __future__ import annotations

from consumer.diagnostics.result import CheckResult, not_checked
from consumer.errors import describe_error
from consumer.settings import env_name


def test_env_name_is_the_variable_users_type() -> None:
    """A settings field maps to its TRIGGER_CONSUMER_ variable."""
    assert env_name("dlq_topic") == "TRIGGER_CONSUMER_DLQ_TOPIC"


def test_not_checked_points_at_the_failed_prerequisite() -> None:
    """A skipped check fails and says which check to fix first."""
    assert not_checked(["reply topic"], "kafka") == [
        CheckResult("reply topic", False, "not checked: kafka failed", "fix kafka first")
    ]


def test_an_error_without_a_message_is_named_once() -> None:
    """An exception whose text is its own name is not repeated."""
    assert describe_error(TimeoutError()) == "TimeoutError"
    assert describe_error(OSError("disk full")) == "OSError: disk full"
