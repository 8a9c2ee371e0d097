"""Policy: which DAGs a request may trigger and which topics it may reply to (spec §5).

DAG patterns are shell globs (``*``, ``?``, ``[...]``), anchored and case-sensitive:
``etl_*`` allows ``etl_daily`` but not ``my_etl_daily`` or ``ETL_daily``. An empty
allow-list allows nothing; ``*`` must be written out to allow every DAG. Reply topics
are exact names. A deliberate re-run (a request with ``rerun``, issue 29) clears a run
instead of making one, so its DAG must also match the re-run allow-list (empty by default).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from consumer.contract import TriggerRequest
from consumer.errors import ErrorCode, Rejected


@dataclass(frozen=True)
class Policy:
    """The allow-lists a request is checked against.

    Attributes:
        dag_patterns: glob patterns; a dag_id must match at least one. None skips the
            check (``validate`` without ``--dag-allowlist``).
        reply_topics: topic names a request may name in ``reply_topic``. None skips the
            check (``validate`` without ``--reply-topic-allowlist``).
        rerun_patterns: glob patterns of the DAGs whose runs a request may re-run. None
            skips the check (``validate`` without ``--rerun-dag-allowlist``).
    """

    dag_patterns: tuple[str, ...] | None
    reply_topics: frozenset[str] | None = frozenset()
    rerun_patterns: tuple[str, ...] | None = ()

    @classmethod
    def from_lists(cls, dag_allowlist: str, reply_topic_allowlist: str = "") -> Policy:
        """Build a policy from comma-separated lists, as settings and flags spell them.

        Args:
            dag_allowlist: comma-separated glob patterns, like ``"etl_*,report_daily"``.
            reply_topic_allowlist: comma-separated topic names.

        Returns:
            The policy; blanks around items and empty items are ignored.
        """
        return cls(
            dag_patterns=tuple(split_list(dag_allowlist)),
            reply_topics=frozenset(split_list(reply_topic_allowlist)),
        )


def split_list(text: str) -> list[str]:
    """Split a comma-separated list, dropping blanks around items and empty items.

    Args:
        text: like ``"a, b,,c"``.

    Returns:
        Like ``["a", "b", "c"]``.
    """
    return [item.strip() for item in text.split(",") if item.strip()]


def check_policy(request: TriggerRequest, policy: Policy) -> None:
    """Check a valid request against both allow-lists.

    The reply topic is checked first, so a request rejected with ``dag_not_allowed``
    has an allowed reply topic (its rejection may be answered there).

    Args:
        request: the validated request.
        policy: the allow-lists.

    Raises:
        Rejected: ``reply_topic_not_allowed``, ``dag_not_allowed`` or ``rerun_not_allowed``.
    """
    if policy.reply_topics is not None:
        check_reply_topic(request.reply_topic, policy.reply_topics)
    if policy.dag_patterns is not None:
        check_dag(request.dag_id, policy.dag_patterns)
    if request.rerun is not None and policy.rerun_patterns is not None:
        check_rerun(request.dag_id, policy.rerun_patterns)


def check_dag(dag_id: str, patterns: Iterable[str]) -> None:
    """Check a dag_id against glob patterns (anchored, case-sensitive).

    Args:
        dag_id: a valid dag_id.
        patterns: the DAG allow-list.

    Raises:
        Rejected: ``dag_not_allowed`` when no pattern matches.
    """
    if not any(fnmatchcase(dag_id, pattern) for pattern in patterns):
        raise Rejected(
            ErrorCode.DAG_NOT_ALLOWED,
            f"DAG {dag_id} is not in the DAG allow-list",
            {"dag_id": dag_id},
        )


def check_rerun(dag_id: str, patterns: Iterable[str]) -> None:
    """Check that a re-run of a run of ``dag_id`` is allowed (glob patterns, as ``check_dag``).

    Args:
        dag_id: a valid dag_id, already in the DAG allow-list.
        patterns: the re-run allow-list.

    Raises:
        Rejected: ``rerun_not_allowed`` when no pattern matches.
    """
    if not any(fnmatchcase(dag_id, pattern) for pattern in patterns):
        raise Rejected(
            ErrorCode.RERUN_NOT_ALLOWED,
            f"re-runs of DAG {dag_id} are not allowed: it is not in RERUN_DAG_ALLOWLIST "
            "(a re-run clears the existing run; a new idempotency key makes a new run)",
            {"dag_id": dag_id},
        )


def check_reply_topic(reply_topic: str | None, allowed: Iterable[str]) -> None:
    """Check a requested reply topic against the reply-topic allow-list.

    Args:
        reply_topic: the request's ``reply_topic``; None (the default topic) always passes.
        allowed: the topic names a request may name.

    Raises:
        Rejected: ``reply_topic_not_allowed`` when the topic is not listed.
    """
    if reply_topic is not None and reply_topic not in set(allowed):
        raise Rejected(
            ErrorCode.REPLY_TOPIC_NOT_ALLOWED,
            f"reply topic {reply_topic} is not in the reply-topic allow-list",
            {"reply_topic": reply_topic},
        )
