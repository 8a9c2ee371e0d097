"""What the audit reads besides the range: which reply topics and which runs (pure parts).

Reading Kafka, the store and Airflow themselves is tested on the real stack in
``tests/cli/test_audit.py``.
"""

from __future__ import annotations

from consumer.audit.history import Answer, Claim, History, Request
from consumer.audit.reading import reply_topics_of, wanted_runs


def req(offset: int, key: str | None, reply_topic: str | None = None) -> Request:
    """A request on requests/0 naming DAG ``d``."""
    return Request(("requests", 0, offset), None, key, "d" if key else None, reply_topic)


def test_reply_topics_are_the_default_and_the_allowed_ones_requests_named() -> None:
    """A reply topic off the allow-list was refused (its reply went to the default)."""
    requests = [
        req(0, "a", "team-b"),
        req(1, "b", "team-a"),
        req(2, "c", "not-allowed"),
        req(3, "d"),
    ]
    topics = reply_topics_of("replies", ("team-a", "team-b", "team-c", "replies"), requests)
    assert topics == ("replies", "team-a", "team-b")


def test_no_request_naming_a_topic_reads_only_the_default() -> None:
    """Without requests naming one, only the default reply topic is read."""
    assert reply_topics_of("replies", ("team-a",), [req(0, "a")]) == ("replies",)


def test_wanted_runs_are_derived_named_and_stored() -> None:
    """Runs the keys derive, that replies to the range name, and that the store maps to."""
    history = History(
        requests=(req(0, "a"), req(1, None)),
        answers=(
            Answer(("requests", 0, 0), "rerun", "a", "d", "kafka__a-rerun"),
            Answer(("requests", 0, 9), "triggered", "z", "d", "kafka__z"),  # outside the range
            Answer(("requests", 0, 0), "error", "a", "d", None),
        ),
        claims={"a": Claim("triggered", "d", "kafka__a-stored")},
    )
    assert wanted_runs(history) == {
        ("d", "kafka__a"),
        ("d", "kafka__a-rerun"),
        ("d", "kafka__a-stored"),
    }
