"""Reconciliation: do the requests, replies, dead letters, the store and Airflow's runs agree?

``reconcile(history) -> Report`` is pure: plain values in, findings out. The rules:

- **Without a reply**: a request in the range that no reply's ``source`` names; committed
  when the group's committed offset is past it. One whose key a *later* record of its
  partition got a reply for (a re-drive, or a producer's re-send) is *superseded*, not
  unanswered: that reply answered the key.
- **Run missing**: a reply that names a run (``triggered``, ``duplicate``, ``rerun``,
  ``completed``, or any status of a later release that names one) or a store entry that
  maps the key to a run (any status but ``pending``), for a run Airflow does not have.
- **Run without a request**: a ``kafka__`` run made while the range was answered that no
  request in the range derives, and no reply read names.
- **Disagreeing key**: the replies of a key name different runs, the store maps it to
  another run than its replies, or one request was answered both with a run and
  ``rejected``/``error``. Answers of different requests that fail and succeed are not a
  disagreement (a corrected request may reuse a key whose attempt made no run).
- **Not dead-lettered**: a request answered ``rejected``/``error`` with no dead-letter copy.

Dead letters are counted per error code; they are outcomes, not disagreements.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from consumer.audit.history import Answer, History, Place, Request, Run, RunRef
from consumer.run_id import RUN_ID_PREFIX, run_id_for

FAILED_STATUSES = frozenset({"rejected", "error"})
PENDING = "pending"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Unanswered:
    """A request in the range without a reply of its own.

    Attributes:
        request: the request.
        committed: whether the consumer group committed past its offset.
        run_exists: whether Airflow has its key's run; None when it names no key or DAG.
        claim: the store's status for its key, or None when the store has none.
        superseded_by: the place of a later request of the same key that was answered.
    """

    request: Request
    committed: bool
    run_exists: bool | None
    claim: str | None
    superseded_by: Place | None = None

    @property
    def repairable(self) -> bool:
        """Committed without reply or run: nothing will answer it unless it is re-driven.

        One not committed is still ahead of the group: the worker answers it when it
        gets there, and a re-driven copy would only be its duplicate.
        """
        return self.committed and self.superseded_by is None and self.run_exists is not True


@dataclass(frozen=True)
class MissingRun:
    """A run that replies or the store say exists, which Airflow does not list.

    Attributes:
        run: (dag_id, dag_run_id).
        key: the idempotency key it belongs to.
        places: the requests in the range of that key.
        evidence: what claims the run, like ``reply triggered`` or ``store triggered``.
    """

    run: RunRef
    key: str
    places: tuple[Place, ...]
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class DisagreeingKey:
    """A key whose answers do not tell the same story.

    Attributes:
        key: the idempotency key.
        reasons: what disagrees, one sentence each.
        answers: every reply read for the key.
    """

    key: str
    reasons: tuple[str, ...]
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class Report:
    """What ``reconcile`` found.

    Attributes:
        requests: requests in the range.
        answered: requests with a reply of their own.
        unanswered: requests without a reply, neither superseded.
        superseded: requests without a reply whose key a later request got one for.
        missing_runs: runs claimed by replies or the store that Airflow does not have.
        orphan_runs: ``kafka__`` runs without a request in the range.
        disagreeing: keys whose answers disagree.
        dead_letters: dead-lettered requests of the range per error code.
        not_dead_lettered: requests answered ``rejected``/``error`` without a dead letter.
    """

    requests: int
    answered: int
    unanswered: tuple[Unanswered, ...] = ()
    superseded: tuple[Unanswered, ...] = ()
    missing_runs: tuple[MissingRun, ...] = ()
    orphan_runs: tuple[Run, ...] = ()
    disagreeing: tuple[DisagreeingKey, ...] = ()
    dead_letters: Mapping[str, int] = field(default_factory=dict)
    not_dead_lettered: tuple[Request, ...] = ()

    @property
    def agrees(self) -> bool:
        """Whether nothing disagrees (dead letters alone do not)."""
        return not (
            self.unanswered
            or self.missing_runs
            or self.orphan_runs
            or self.disagreeing
            or self.not_dead_lettered
        )

    @property
    def repairable(self) -> tuple[Request, ...]:
        """The requests ``--repair`` re-drives: committed, without reply or run."""
        return tuple(item.request for item in self.unanswered if item.repairable)


def names_run(answer: Answer) -> bool:
    """Whether a reply says its key has a run (every status but a failure, when it names one).

    Args:
        answer: a reply.

    Returns:
        True for ``triggered``, ``duplicate``, ``rerun``, ``completed`` and unknown statuses
        that name a DAG and a run.
    """
    return answer.status not in FAILED_STATUSES and answer.run is not None


def expected_run(request: Request) -> RunRef | None:
    """The run a request's key derives (``consumer.run_id``), or None without key or DAG.

    Args:
        request: a request.

    Returns:
        (dag_id, dag_run_id), or None.
    """
    if request.key is None or request.dag_id is None:
        return None
    return (request.dag_id, run_id_for(request.key))


def reconcile(history: History) -> Report:
    """Judge whether the history agrees; pure.

    Args:
        history: what the audit read.

    Returns:
        The findings.
    """
    by_place: dict[Place, list[Answer]] = defaultdict(list)
    by_key: dict[str, list[Answer]] = defaultdict(list)
    for answer in history.answers:
        by_place[answer.source].append(answer)
        if answer.key is not None:
            by_key[answer.key].append(answer)
    requests = history.requests
    unanswered = [
        _unanswered(request, history, by_key)
        for request in requests
        if request.place not in by_place
    ]
    keys = sorted({request.key for request in requests if request.key is not None})
    return Report(
        requests=len(requests),
        answered=sum(1 for request in requests if request.place in by_place),
        unanswered=tuple(item for item in unanswered if item.superseded_by is None),
        superseded=tuple(item for item in unanswered if item.superseded_by is not None),
        missing_runs=_missing_runs(history, by_place),
        orphan_runs=_orphan_runs(history),
        disagreeing=tuple(
            found
            for key in keys
            if (found := _disagreement(key, by_key.get(key, []), history)) is not None
        ),
        dead_letters=_dead_letter_counts(history),
        not_dead_lettered=_not_dead_lettered(history, by_place),
    )


def _unanswered(
    request: Request, history: History, by_key: Mapping[str, list[Answer]]
) -> Unanswered:
    topic, partition, offset = request.place
    run = expected_run(request)
    claim = history.claims.get(request.key) if request.key is not None else None
    later = sorted(
        answer.source
        for answer in by_key.get(request.key or "", [])
        if answer.source[:2] == (topic, partition) and answer.source[2] > offset
    )
    return Unanswered(
        request=request,
        committed=history.committed.get((topic, partition), -1) > offset,
        run_exists=None if run is None else run in history.runs,
        claim=None if claim is None else claim.status,
        superseded_by=later[0] if later else None,
    )


def _missing_runs(
    history: History, by_place: Mapping[Place, list[Answer]]
) -> tuple[MissingRun, ...]:
    evidence: dict[RunRef, dict[str, None]] = defaultdict(dict)  # ordered set per run
    places: dict[RunRef, dict[Place, None]] = defaultdict(dict)
    keys: dict[RunRef, str] = {}
    for request in history.requests:
        if request.key is None:
            continue
        claims = [
            (answer.run, f"reply {answer.status}")
            for answer in by_place.get(request.place, [])
            if names_run(answer)
        ]
        claim = history.claims.get(request.key)
        if claim is not None and claim.status != PENDING:
            claims.append(((claim.dag_id, claim.dag_run_id), f"store {claim.status}"))
        for run, said in claims:
            if run is None or run in history.runs:
                continue
            evidence[run][said] = None
            places[run][request.place] = None
            keys.setdefault(run, request.key)
    return tuple(
        MissingRun(run=run, key=keys[run], places=tuple(places[run]), evidence=tuple(said))
        for run, said in evidence.items()
    )


def _orphan_runs(history: History) -> tuple[Run, ...]:
    since, until = history.orphans_since, history.orphans_until
    if since is None:
        return ()
    known: set[RunRef] = {run for r in history.requests if (run := expected_run(r)) is not None}
    known.update(answer.run for answer in history.answers if answer.run is not None)
    known.update((claim.dag_id, claim.dag_run_id) for claim in history.claims.values())
    return tuple(
        run
        for run in history.runs.values()
        if run.dag_run_id.startswith(RUN_ID_PREFIX)
        and run.ref not in known
        and run.created is not None
        and run.created >= since
        and (until is None or run.created <= until)
    )


def _disagreement(key: str, answers: list[Answer], history: History) -> DisagreeingKey | None:
    reasons: list[str] = []
    named = _ordered(run for answer in answers if names_run(answer) and (run := answer.run))
    if len(named) > 1:
        reasons.append("replies name different runs: " + ", ".join(_show(run) for run in named))
    claim = history.claims.get(key)
    if claim is not None and claim.status != PENDING and named:
        stored = (claim.dag_id, claim.dag_run_id)
        if stored not in named:
            reasons.append(
                f"the store maps the key to {_show(stored)}, replies to {_show(named[0])}"
            )
    statuses: dict[Place, dict[str, None]] = defaultdict(dict)
    for answer in answers:
        statuses[answer.source][answer.status] = None
    for place, said in sorted(statuses.items()):
        failed = [status for status in said if status in FAILED_STATUSES]
        succeeded = [
            answer.status for answer in answers if answer.source == place and names_run(answer)
        ]
        if failed and succeeded:
            both = " and ".join(_ordered([*succeeded, *failed]))
            reasons.append(f"request {_where(place)} was answered both {both}")
    if not reasons:
        return None
    return DisagreeingKey(key=key, reasons=tuple(reasons), answers=tuple(answers))


def _dead_letter_counts(history: History) -> dict[str, int]:
    places = {request.place for request in history.requests}
    counted: dict[Place, str] = {}
    for letter in history.dead_letters:
        if letter.source in places:
            counted.setdefault(letter.source, letter.error_code)  # a re-sent copy counts once
    return dict(sorted(Counter(counted.values()).items()))


def _not_dead_lettered(
    history: History, by_place: Mapping[Place, list[Answer]]
) -> tuple[Request, ...]:
    lettered = {letter.source for letter in history.dead_letters}
    return tuple(
        request
        for request in history.requests
        if request.place not in lettered
        and any(answer.status in FAILED_STATUSES for answer in by_place.get(request.place, []))
    )


def _ordered(items: Iterable[_T]) -> list[_T]:
    return list(dict.fromkeys(items))


def _show(run: RunRef | None) -> str:
    return "none" if run is None else f"{run[0]}/{run[1]}"


def _where(place: Place) -> str:
    return f"{place[0]}/{place[1]}@{place[2]}"
