"""The reconciliation over plain values: table tests of each finding (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from consumer.audit.history import Answer, Claim, DeadLetter, History, Request, Run
from consumer.audit.reconcile import DisagreeingKey, MissingRun, Report, reconcile
from consumer.run_id import run_id_for

TOPIC = "requests"
DAG = "load_orders"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def req(offset: int, key: str | None, dag: str | None = DAG, partition: int = 0) -> Request:
    """A request at ``offset`` of partition ``partition``."""
    return Request(place=(TOPIC, partition, offset), timestamp_ms=None, key=key, dag_id=dag)


def ans(
    offset: int,
    status: str,
    key: str | None,
    *,
    run: str | None = "derived",
    dag: str | None = DAG,
    partition: int = 0,
    code: str | None = None,
) -> Answer:
    """A reply to the request at ``offset``; ``run="derived"`` names the key's own run."""
    if run == "derived":
        run = run_id_for(key) if key is not None else None
    return Answer(
        source=(TOPIC, partition, offset),
        status=status,
        key=key,
        dag_id=dag,
        dag_run_id=run,
        error_code=code,
    )


def run_of(key: str, dag: str = DAG, *, created: datetime = T0) -> Run:
    """The key's derived run, as Airflow lists it."""
    return Run(dag_id=dag, dag_run_id=run_id_for(key), state="success", created=created)


def runs(*listed: Run) -> dict[tuple[str, str], Run]:
    """Runs keyed as ``History.runs`` holds them."""
    return {run.ref: run for run in listed}


def history(**fields: object) -> History:
    """A history of three answered requests k0..k2, each with its run, committed."""
    base = History(
        requests=(req(0, "k0"), req(1, "k1"), req(2, "k2")),
        answers=(ans(0, "triggered", "k0"), ans(1, "duplicate", "k1"), ans(2, "triggered", "k2")),
        committed={(TOPIC, 0): 3},
        runs=runs(run_of("k0"), run_of("k1"), run_of("k2")),
        orphans_since=T0 - timedelta(minutes=1),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_complete_history_agrees() -> None:
    """Every request answered, every run there, nothing else: the report agrees."""
    report = reconcile(history())
    assert report == Report(requests=3, answered=3)
    assert report.agrees
    assert report.repairable == ()


@pytest.mark.parametrize(
    ("committed", "listed", "claims", "expected"),
    [
        ({(TOPIC, 0): 3}, ("k0", "k1", "k2"), {}, (True, True, None, False)),
        ({(TOPIC, 0): 2}, ("k0", "k1", "k2"), {}, (False, True, None, False)),
        ({(TOPIC, 0): 3}, ("k0", "k1"), {}, (True, False, None, True)),
        ({}, ("k0", "k1"), {}, (False, False, None, False)),
        (
            {(TOPIC, 0): 3},
            ("k0", "k1", "k2"),
            {"k2": Claim("pending", DAG, run_id_for("k2"))},
            (True, True, "pending", False),
        ),
    ],
    ids=["committed-with-run", "not-committed", "committed-no-run", "no-commit", "store-pending"],
)
def test_a_request_without_a_reply(
    committed: dict[tuple[str, int], int],
    listed: tuple[str, ...],
    claims: dict[str, Claim],
    expected: tuple[bool, bool, str | None, bool],
) -> None:
    """A request no reply names: committed or not, its run, the store, whether repairable."""
    found = reconcile(
        history(
            answers=(ans(0, "triggered", "k0"), ans(1, "duplicate", "k1")),
            committed=committed,
            runs=runs(*(run_of(key) for key in listed)),
            claims=claims,
        )
    )
    assert found.answered == 2
    (item,) = found.unanswered
    assert item.request == req(2, "k2")
    assert (item.committed, item.run_exists, item.claim, item.repairable) == expected
    assert found.repairable == ((req(2, "k2"),) if expected[3] else ())
    assert not found.agrees


def test_a_later_answer_of_the_same_key_supersedes() -> None:
    """A re-driven copy later in the partition got the reply: the original is superseded."""
    found = reconcile(
        history(
            answers=(
                ans(0, "triggered", "k0"),
                ans(1, "duplicate", "k1"),
                ans(7, "triggered", "k2"),  # the copy, outside the range
            )
        )
    )
    assert found.unanswered == ()
    (item,) = found.superseded
    assert item.superseded_by == (TOPIC, 0, 7)
    assert found.agrees


def test_an_earlier_answer_of_the_key_does_not_supersede() -> None:
    """Only a later record answers for an unanswered one; an earlier reply of the key does not."""
    found = reconcile(
        history(
            requests=(req(0, "k0"), req(1, "k0")),
            answers=(ans(0, "triggered", "k0"),),
            runs=runs(run_of("k0")),
        )
    )
    assert [item.request.place for item in found.unanswered] == [(TOPIC, 0, 1)]
    assert found.superseded == ()


@pytest.mark.parametrize("status", ["triggered", "duplicate", "rerun", "completed", "later"])
def test_a_reply_naming_a_run_airflow_lacks(status: str) -> None:
    """Every status that names a run, also one this release does not know, needs the run."""
    found = reconcile(
        history(
            answers=(
                ans(0, "triggered", "k0"),
                ans(1, status, "k1"),
                ans(2, "triggered", "k2"),
            ),
            runs=runs(run_of("k0"), run_of("k2")),
        )
    )
    assert found.missing_runs == (
        MissingRun(
            run=(DAG, run_id_for("k1")),
            key="k1",
            places=((TOPIC, 0, 1),),
            evidence=(f"reply {status}",),
        ),
    )
    assert not found.agrees


def test_the_store_claims_a_run_too() -> None:
    """A store entry mapping a key to a run Airflow lacks is evidence; pending is not."""
    claims = {
        "k0": Claim("triggered", DAG, run_id_for("k0")),
        "k2": Claim("pending", DAG, run_id_for("k2")),
    }
    found = reconcile(
        history(
            answers=(ans(1, "duplicate", "k1"),),
            claims=claims,
            runs=runs(run_of("k1")),
        )
    )
    assert [(m.key, m.evidence) for m in found.missing_runs] == [("k0", ("store triggered",))]
    assert {item.request.key for item in found.unanswered} == {"k0", "k2"}


def test_failed_answers_claim_no_run() -> None:
    """A rejected or failed request names no run, so no run is missing for it."""
    found = reconcile(
        history(
            answers=(
                ans(0, "triggered", "k0"),
                ans(1, "triggered", "k1"),
                ans(2, "error", "k2", run=None, code="dag_not_found"),
            ),
            dead_letters=(DeadLetter((TOPIC, 0, 2), "dag_not_found"),),
            runs=runs(run_of("k0"), run_of("k1")),
        )
    )
    assert found.missing_runs == ()
    assert found.dead_letters == {"dag_not_found": 1}
    assert found.agrees


def test_orphan_runs_are_kafka_runs_made_in_the_window_that_nothing_names() -> None:
    """A kafka__ run made after the range began, named by no request or reply, is an orphan."""
    orphan = run_of("stray")
    before = run_of("old", created=T0 - timedelta(hours=1))
    scheduled = Run(DAG, "scheduled__2026-12-07T00:00:00+00:00", "success", T0)
    named_elsewhere = run_of("later-key")
    found = reconcile(
        history(
            answers=(
                *history().answers,
                Answer((TOPIC, 0, 9), "triggered", "later-key", DAG, run_id_for("later-key")),
            ),
            runs=runs(
                run_of("k0"), run_of("k1"), run_of("k2"), orphan, before, scheduled, named_elsewhere
            ),
        )
    )
    assert found.orphan_runs == (orphan,)
    assert not found.agrees


def test_orphans_are_bounded_by_the_range_end_and_need_a_start() -> None:
    """Runs made after a bounded range's answers, or with no window at all, are not judged."""
    late = run_of("stray", created=T0 + timedelta(hours=1))
    listed = runs(run_of("k0"), run_of("k1"), run_of("k2"), late)
    assert reconcile(history(runs=listed, orphans_until=T0)).orphan_runs == ()
    assert reconcile(history(runs=listed, orphans_since=None)).orphan_runs == ()
    assert reconcile(history(runs=listed)).orphan_runs == (late,)


def test_a_run_of_the_same_id_on_another_dag_is_an_orphan() -> None:
    """A request's run on the wrong DAG is not its run."""
    stray = run_of("k0", dag="other_dag")
    found = reconcile(history(runs={**history().runs, stray.ref: stray}))
    assert found.orphan_runs == (stray,)


@pytest.mark.parametrize(
    ("answers", "claim", "reason"),
    [
        (
            (ans(0, "triggered", "k0"), ans(5, "duplicate", "k0", run="kafka__other")),
            None,
            f"replies name different runs: {DAG}/kafka__k0, {DAG}/kafka__other",
        ),
        (
            (ans(0, "triggered", "k0"), ans(0, "error", "k0", run=None, code="airflow_rejected")),
            None,
            "request requests/0@0 was answered both triggered and error",
        ),
        (
            (ans(0, "triggered", "k0"),),
            Claim("triggered", DAG, "kafka__elsewhere"),
            f"the store maps the key to {DAG}/kafka__elsewhere, replies to {DAG}/kafka__k0",
        ),
    ],
    ids=["two-runs", "one-request-both", "store-elsewhere"],
)
def test_disagreeing_keys(answers: tuple[Answer, ...], claim: Claim | None, reason: str) -> None:
    """Replies of one key naming two runs, a request answered both ways, the store elsewhere."""
    found = reconcile(
        history(
            requests=(req(0, "k0"),),
            answers=answers,
            claims={} if claim is None else {"k0": claim},
            runs=runs(
                run_of("k0"),
                Run(DAG, "kafka__other", "success", T0 - timedelta(days=1)),
                Run(DAG, "kafka__elsewhere", "success", T0 - timedelta(days=1)),
            ),
            dead_letters=(DeadLetter((TOPIC, 0, 0), "airflow_rejected"),),
        )
    )
    assert found.disagreeing == (DisagreeingKey("k0", (reason,), answers),)
    assert not found.agrees


@pytest.mark.parametrize(
    "statuses",
    [
        ("triggered", "completed"),
        ("triggered", "rerun", "completed"),
        ("triggered", "triggered"),  # at-least-once: a reply sent twice
    ],
)
def test_run_statuses_naming_one_run_agree(statuses: tuple[str, ...]) -> None:
    """triggered, duplicate, rerun and completed agree when they name the same run."""
    answers = tuple(ans(0, status, "k0") for status in statuses)
    found = reconcile(history(requests=(req(0, "k0"),), answers=answers, runs=runs(run_of("k0"))))
    assert found.disagreeing == ()
    assert found.agrees


def test_a_failure_then_a_success_of_different_requests_agrees() -> None:
    """A key rejected once (DAG missing) and triggered by a corrected request is no dispute."""
    answers = (
        ans(0, "error", "k0", run=None, code="dag_not_found"),
        ans(1, "triggered", "k0"),
    )
    found = reconcile(
        history(
            requests=(req(0, "k0"), req(1, "k0")),
            answers=answers,
            runs=runs(run_of("k0")),
            dead_letters=(DeadLetter((TOPIC, 0, 0), "dag_not_found"),),
        )
    )
    assert found.disagreeing == ()
    assert found.agrees


def test_dead_letters_are_counted_per_code_once_per_request() -> None:
    """Dead letters of requests in the range count per code; a re-sent copy counts once."""
    letters = (
        DeadLetter((TOPIC, 0, 3), "dag_not_found"),
        DeadLetter((TOPIC, 0, 3), "dag_not_found"),
        DeadLetter((TOPIC, 0, 4), "invalid_json"),
        DeadLetter((TOPIC, 0, 99), "invalid_json"),  # outside the range
    )
    found = reconcile(
        history(
            requests=(*history().requests, req(3, "k3"), req(4, None, dag=None)),
            answers=(
                *history().answers,
                ans(3, "error", "k3", run=None, code="dag_not_found"),
                ans(4, "rejected", None, run=None, dag=None, code="invalid_json"),
            ),
            committed={(TOPIC, 0): 5},
            dead_letters=letters,
        )
    )
    assert found.dead_letters == {"dag_not_found": 1, "invalid_json": 1}
    assert found.agrees


def test_a_failure_without_a_dead_letter_disagrees() -> None:
    """Every rejected and error reply has a dead-letter copy (spec §2); a missing one is named."""
    found = reconcile(
        history(
            requests=(req(0, None, dag=None),),
            answers=(ans(0, "rejected", None, run=None, dag=None, code="invalid_json"),),
        )
    )
    assert found.not_dead_lettered == (req(0, None, dag=None),)
    assert not found.agrees


def test_an_unreadable_request_without_reply_is_repairable_once_committed() -> None:
    """A request without key or DAG has no run to look for: committed, it is re-driven."""
    found = reconcile(history(requests=(req(0, None, dag=None),), answers=()))
    (item,) = found.unanswered
    assert item.run_exists is None
    assert found.repairable == (req(0, None, dag=None),)


def test_partitions_are_kept_apart() -> None:
    """Commits and superseding answers are per partition."""
    found = reconcile(
        history(
            requests=(req(4, "k", partition=1),),
            answers=(ans(9, "triggered", "k", partition=0),),
            committed={(TOPIC, 0): 10, (TOPIC, 1): 2},
            runs=runs(run_of("k")),
        )
    )
    (item,) = found.unanswered
    assert (item.committed, item.superseded_by) == (False, None)
