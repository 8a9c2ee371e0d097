"""policy: DAG glob allow-list (anchored, case-sensitive) and reply-topic allow-list."""

from __future__ import annotations

import pytest

from consumer.contract import TriggerRequest
from consumer.errors import ErrorCode, Rejected
from consumer.pipeline.policy import Policy, check_dag, check_policy, check_reply_topic, split_list


def _request(dag_id: str = "etl_daily", reply_topic: str | None = None) -> TriggerRequest:
    return TriggerRequest(idempotency_key="k", dag_id=dag_id, reply_topic=reply_topic)


@pytest.mark.parametrize(
    ("dag_id", "patterns"),
    [
        ("etl_daily", ["etl_*"]),
        ("etl_daily", ["report", "etl_daily"]),
        ("etl_daily", ["*"]),
        ("etl_1", ["etl_?"]),
        ("etl_b", ["etl_[abc]"]),
    ],
)
def test_matching_dag_passes(dag_id: str, patterns: list[str]) -> None:
    """A dag_id matching any glob pattern is allowed."""
    check_dag(dag_id, patterns)


@pytest.mark.parametrize(
    ("dag_id", "patterns"),
    [
        ("my_etl_daily", ["etl_*"]),  # anchored at the start
        ("etl_daily_v2", ["etl_daily"]),  # anchored at the end
        ("ETL_daily", ["etl_*"]),  # case-sensitive
        ("etl_daily", ["Etl_*"]),
        ("etl_daily", []),  # an empty allow-list allows nothing
        ("etl_10", ["etl_?"]),
    ],
)
def test_other_dags_are_not_allowed(dag_id: str, patterns: list[str]) -> None:
    """A dag_id no pattern matches is dag_not_allowed, naming the DAG."""
    with pytest.raises(Rejected) as caught:
        check_dag(dag_id, patterns)
    assert caught.value.code is ErrorCode.DAG_NOT_ALLOWED
    assert caught.value.details == {"dag_id": dag_id}


def test_reply_topic_allow_list_is_exact() -> None:
    """No reply_topic always passes; a named one must be listed exactly."""
    check_reply_topic(None, [])
    check_reply_topic("team-replies", ["team-replies"])
    for topic in ("team-replies-2", "Team-replies", "team-*"):
        with pytest.raises(Rejected) as caught:
            check_reply_topic(topic, ["team-replies", "team-*"][: 1 if topic == "team-*" else 2])
        assert caught.value.code is ErrorCode.REPLY_TOPIC_NOT_ALLOWED


def test_check_policy_checks_reply_topic_first() -> None:
    """With both lists broken the answer is reply_topic_not_allowed (so DAG refusals can reply)."""
    policy = Policy.from_lists("etl_*", "replies")
    check_policy(_request(reply_topic="replies"), policy)
    with pytest.raises(Rejected) as caught:
        check_policy(_request(dag_id="other", reply_topic="elsewhere"), policy)
    assert caught.value.code is ErrorCode.REPLY_TOPIC_NOT_ALLOWED
    with pytest.raises(Rejected) as caught:
        check_policy(_request(dag_id="other", reply_topic="replies"), policy)
    assert caught.value.code is ErrorCode.DAG_NOT_ALLOWED


def test_lists_are_comma_separated() -> None:
    """Allow-lists split on commas and ignore blanks and empty items."""
    assert split_list(" a, b,,c ,") == ["a", "b", "c"]
    assert split_list("") == []
    policy = Policy.from_lists("etl_*, report", "r1,r2")
    assert policy == Policy(dag_patterns=("etl_*", "report"), reply_topics=frozenset({"r1", "r2"}))
