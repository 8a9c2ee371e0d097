"""Tests of consumer/pipeline/dedup.py: what an entry means, and who made the run (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from consumer.airflow import TriggerResult
from consumer.contract import TriggerRequest
from consumer.errors import AirflowError, ErrorCode
from consumer.pipeline.dedup import (
    Seen,
    claimed,
    judge,
    made_the_run,
    refused_again,
    releases_key,
    remembered,
)
from consumer.record import InboundRecord
from consumer.store import EntryStatus, RequestOrigin, StoredEntry

HERE = ("requests", 0, 7)
ELSEWHERE = ("requests", 1, 3)
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def entry(
    status: EntryStatus, at: tuple[str, int, int] | None, fingerprint: str = "f"
) -> StoredEntry:
    """A live entry of ``status`` written by the request at ``at`` (None: store schema 1)."""
    origin = None
    if at is not None:
        origin = RequestOrigin(
            topic=at[0],
            partition=at[1],
            offset=at[2],
            timestamp_ms=None,
            correlation_id=None,
            reply_topic=None,
            route=None,
            trace=None,
        )
    return StoredEntry(
        key="k",
        fingerprint=fingerprint,
        dag_id="d",
        dag_run_id="kafka__k",
        status=status,
        run_state=None,
        logical_date=None,
        run_url=None,
        track=False,
        completed_at=None,
        created_at=NOW,
        updated_at=NOW,
        origin=origin,
    )


def result(
    *, created: bool, may_have_reached: bool, source: tuple[str, int, int, str] | None = None
) -> TriggerResult:
    """What a trigger reported; ``source``: the request the run's conf names."""
    return TriggerResult(
        dag_id="d",
        dag_run_id="kafka__k",
        state="queued",
        logical_date=None,
        run_url="",
        source=source,
        created=created,
        dag_paused=None,
        attempts=1,
        may_have_reached=may_have_reached,
    )


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, Seen.NEW),
        (entry(EntryStatus.PENDING, HERE, fingerprint="other"), Seen.REUSED),
        (entry(EntryStatus.PENDING, HERE), Seen.RESUMED),
        (entry(EntryStatus.PENDING, None), Seen.RESUMED),  # schema 1: taken for this request
        (entry(EntryStatus.PENDING, ELSEWHERE), Seen.CLAIMED),
        (entry(EntryStatus.TRIGGERED, HERE), Seen.OWN),
        (entry(EntryStatus.TRIGGERED, ELSEWHERE), Seen.KNOWN),
        (entry(EntryStatus.DUPLICATE, None), Seen.KNOWN),
    ],
)
def test_judge_reads_each_kind_of_entry(stored: StoredEntry | None, expected: Seen) -> None:
    """Each row of the module docstring's table."""
    assert judge(stored, "f", HERE) is expected


def test_the_mark_just_written_is_new_and_another_claim_is_not() -> None:
    """After mark_pending, the mark this call wrote is NEW; a replica's claim stays CLAIMED.

    A mark of this very record that this call did not write is its old owner's (the
    partition moved while its POST was in flight): RESUMED, so a run found is answered
    ``triggered``; before, it was NEW and answered ``duplicate`` (CI, test_shared_store).
    """
    written = replace(entry(EntryStatus.PENDING, HERE), claimed_here=True)
    assert claimed(written, "f", HERE) is Seen.NEW
    assert claimed(entry(EntryStatus.PENDING, HERE), "f", HERE) is Seen.RESUMED
    assert claimed(entry(EntryStatus.PENDING, ELSEWHERE), "f", HERE) is Seen.CLAIMED
    assert claimed(entry(EntryStatus.TRIGGERED, ELSEWHERE), "f", HERE) is Seen.KNOWN


@pytest.mark.parametrize(
    ("seen", "created", "may_have_reached", "made"),
    [
        (Seen.NEW, True, False, True),
        (Seen.NEW, True, True, True),
        (Seen.NEW, False, False, False),  # another request's run: duplicate
        (Seen.NEW, False, True, True),  # its own lost POST may have made it
        (Seen.RESUMED, True, False, True),
        (Seen.RESUMED, False, False, True),  # its earlier attempt (before a crash) made it
        (Seen.RESUMED, False, True, True),
        (Seen.CLAIMED, True, False, True),
        (Seen.CLAIMED, False, False, False),  # the claimant's run
        (Seen.CLAIMED, False, True, True),
    ],
)
def test_made_the_run_for_every_combination(
    seen: Seen, created: bool, may_have_reached: bool, made: bool
) -> None:
    """Every combination of claim and trigger report: triggered (True) or duplicate.

    The run names no request here (made otherwise, or by an older release): the guess.
    """
    reported = result(created=created, may_have_reached=may_have_reached)
    assert made_the_run(seen, reported, (*HERE, "f")) is made


@pytest.mark.parametrize("seen", [Seen.NEW, Seen.RESUMED, Seen.CLAIMED])
@pytest.mark.parametrize("may_have_reached", [False, True])
def test_a_found_run_that_names_its_request_settles_who_made_it(
    seen: Seen, may_have_reached: bool
) -> None:
    """Nemesis 1313/1515 and their review: the run's conf, not a guess, says who made it."""
    me = (*HERE, "f")
    mine = result(created=False, may_have_reached=may_have_reached, source=me)
    theirs = result(created=False, may_have_reached=may_have_reached, source=(*ELSEWHERE, "f"))
    # the same coordinates in an earlier life of the topic, for another request
    earlier = result(created=False, may_have_reached=may_have_reached, source=(*HERE, "g"))
    assert made_the_run(seen, mine, me) is True
    assert made_the_run(seen, theirs, me) is False
    assert made_the_run(seen, earlier, me) is False


@pytest.mark.parametrize(
    ("seen", "releases"), [(Seen.NEW, True), (Seen.RESUMED, True), (Seen.CLAIMED, False)]
)
def test_a_refusal_releases_only_the_requests_own_mark(seen: Seen, releases: bool) -> None:
    """A definite refusal drops this request's pending mark, never another request's."""
    assert releases_key(seen) is releases


def test_a_remembered_refusal_holds_no_nul_and_reads_back_with_an_unknown_code() -> None:
    """Airflow's words may hold NUL (PostgreSQL text cannot); a newer release's code degrades."""
    exc = AirflowError(ErrorCode.DAG_NOT_FOUND, "no\x00such DAG", {"status": 404, "attempts": 3})
    refusal = remembered("k", ("requests", 0, 7), exc)
    assert (refusal.code, refusal.message, refusal.details) == (
        "dag_not_found",
        "nosuch DAG",
        {"status": 404},
    )
    record = InboundRecord("requests", 0, 7, None, b"k", b"{}")
    request = TriggerRequest(idempotency_key="k", dag_id="d")
    newer = replace(refusal, code="dag_paused_forever")
    outcome = refused_again(record, request, newer)
    assert outcome.error_code is ErrorCode.AIRFLOW_REJECTED
    assert refused_again(record, request, refusal).error_code is ErrorCode.DAG_NOT_FOUND
