"""Checker: the invariants of spec §3, as pure functions over a recorded ``History``.

It reads only what the servers hold (the Kafka log, replies, dead letters, offsets,
Airflow's runs) and the ``chaos-kind`` header each producer wrote; it imports nothing from
the worker. The DAG run id rule is the README's, written out again here.

A *request* is identified by where it sits in the log and, for an event, by the route
that derived it: (topic, partition, offset, route). Its *maker* record for a key is the
record its run's conf names (``trigger_consumer/source``, README), else the first committed
record in log order that carries that key in a readable body.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.chaos.history import History, Message, Run
from tests.chaos.workload import INVALID, KIND_HEADER, MISSING_DAG, TOMBSTONE

RUN_ID_PREFIX = "kafka__"
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:+-]{1,241}")
UNSAFE = re.compile(r"[^A-Za-z0-9_.:+-]+")
FINAL_STATES = frozenset({"success", "failed"})
TRACE_CONF_KEY = "airflow/dagrun_parent_trace_context"
SOURCE_CONF_KEY = "trigger_consumer/source"  # the request whose POST made the run
ADDED_CONF_KEYS = frozenset({TRACE_CONF_KEY, SOURCE_CONF_KEY})
ANSWERS = frozenset({"triggered", "duplicate", "rejected", "error"})  # not `completed`
MAX_KEYS_SHOWN = 12

Identity = tuple[str, int, int, str]  # (topic, partition, offset, route)


@dataclass(frozen=True)
class Violation:
    """One broken invariant, with the keys (or positions) involved and the evidence."""

    invariant: str
    keys: tuple[str, ...]
    evidence: str = ""

    def __str__(self) -> str:
        """``invariant: N keys [k1, k2, ...]: evidence``."""
        shown = ", ".join(self.keys[:MAX_KEYS_SHOWN])
        more = (
            f" and {len(self.keys) - MAX_KEYS_SHOWN} more"
            if len(self.keys) > MAX_KEYS_SHOWN
            else ""
        )
        return f"{self.invariant}: {len(self.keys)} [{shown}{more}]: {self.evidence}"


def run_id_of(key: str) -> str:
    """The DAG run id of an idempotency key, by the README's rule."""
    if PLAIN_KEY.fullmatch(key):
        return RUN_ID_PREFIX + key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{RUN_ID_PREFIX}{UNSAFE.sub('_', key)[:224]}~{digest}"


@dataclass(frozen=True)
class Request:
    """One request as the checker understands it: a plain request or an event's derived one."""

    identity: Identity
    kind: str
    key: str | None  # the idempotency key, when the body is readable that far
    body: dict[str, Any] | None

    @property
    def shown(self) -> str:
        """How a report names it."""
        topic, partition, offset, route = self.identity
        where = f"{topic}-{partition}@{offset}" + (f"/{route}" if route else "")
        return f"{self.key} ({where})" if self.key else f"{self.kind} {where}"


@dataclass
class Facts:
    """What every invariant reads, derived once from a history."""

    history: History
    requests: list[Request] = field(default_factory=list)
    answers: dict[Identity, list[dict[str, Any]]] = field(default_factory=dict)
    completed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)
    makers: dict[str, Request] = field(default_factory=dict)


def _requests_of(history: History, message: Message) -> list[Request]:
    """The requests one committed record stands for (two per event: one per route)."""
    kind = message.header(KIND_HEADER)
    body = message.json()
    if message.topic == history.event_topic:
        event_id = body.get("id") if isinstance(body, dict) else None
        return [
            Request(
                (*message.position, route),
                kind,
                f"{route}:{event_id}" if isinstance(event_id, str) else None,
                None,
            )
            for route in history.routes
        ]
    if not isinstance(body, dict):
        return [Request((*message.position, ""), kind, None, None)]
    key = body.get("idempotency_key")
    return [Request((*message.position, ""), kind, key if isinstance(key, str) else None, body)]


def _identity(reply: Message, body: dict[str, Any]) -> Identity:
    source = body.get("source") or {}
    return (
        str(source.get("topic")),
        int(source.get("partition", -1)),
        int(source.get("offset", -1)),
        reply.header("route"),
    )


def gather(history: History) -> Facts:
    """Derive the requests, their answers, `completed` replies, runs and makers of a history."""
    facts = Facts(history)
    for message in history.requests:
        facts.requests += _requests_of(history, message)
    answers: dict[Identity, list[dict[str, Any]]] = defaultdict(list)
    completed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for reply in history.replies:
        body = reply.json()
        if not isinstance(body, dict):
            continue
        if body.get("status") == "completed":
            completed[str(body.get("idempotency_key"))].append(body)
        else:
            answers[_identity(reply, body)].append(body)
    facts.answers, facts.completed = dict(answers), dict(completed)
    runs: dict[str, list[Run]] = defaultdict(list)
    for run in history.runs:
        runs[run.run_id].append(run)
    facts.runs = dict(runs)
    for request in facts.requests:
        if request.key is not None and request.kind not in (INVALID, TOMBSTONE):
            facts.makers.setdefault(request.key, request)
    for key in facts.makers:
        named = _named_maker(facts, key)
        if named is not None:
            facts.makers[key] = named
    return facts


def _named_maker(facts: Facts, key: str) -> Request | None:
    """The request of ``key`` at the coordinates its run's conf names, if any."""
    runs = facts.runs.get(run_id_of(key), [])
    source = runs[0].conf.get(SOURCE_CONF_KEY) if runs else None
    if not isinstance(source, dict):
        return None
    where = (source.get("topic"), source.get("partition"), source.get("offset"))
    return next((r for r in facts.requests if r.key == key and r.identity[:3] == where), None)


def _status(answer: dict[str, Any]) -> tuple[str, str | None, str | None]:
    return (answer.get("status"), (answer.get("error") or {}).get("code"), answer.get("dag_run_id"))


def check_answered(facts: Facts) -> list[Violation]:
    """Every committed request has at least one reply."""
    missing = [r.shown for r in facts.requests if not facts.answers.get(r.identity)]
    return (
        [Violation("every committed request answered", tuple(missing), "no reply")]
        if missing
        else []
    )


def check_agreement(facts: Facts) -> list[Violation]:
    """No two replies to one request disagree (status, error code, run)."""
    found = []
    for request in facts.requests:
        kinds = {_status(a) for a in facts.answers.get(request.identity, [])}
        if len(kinds) > 1:
            found.append((request.shown, sorted(kinds, key=str)))
    if not found:
        return []
    evidence = "; ".join(f"{k}: {v}" for k, v in found[:MAX_KEYS_SHOWN])
    return [Violation("replies to one request agree", tuple(k for k, _ in found), evidence)]


def check_maker_triggered(facts: Facts) -> list[Violation]:
    """The request that made a run is answered `triggered`, never `duplicate` or else."""
    found = []
    for key, maker in facts.makers.items():
        if run_id_of(key) not in facts.runs:
            continue
        statuses = sorted({a.get("status") for a in facts.answers.get(maker.identity, [])})
        if statuses and statuses != ["triggered"]:
            found.append((maker.shown, statuses))
    if not found:
        return []
    evidence = "; ".join(f"{k}: {v}" for k, v in found[:MAX_KEYS_SHOWN])
    return [
        Violation(
            "the request that made a run is answered triggered",
            tuple(k for k, _ in found),
            evidence,
        )
    ]


def check_one_run_per_key(facts: Facts) -> list[Violation]:
    """One run per key, in the maker's DAG, with the maker's conf (a reused body made none)."""
    doubled, foreign = [], []
    for key, maker in facts.makers.items():
        runs = facts.runs.get(run_id_of(key), [])
        if len(runs) > 1:
            doubled.append(f"{key}: {[r.dag_id for r in runs]}")
        if maker.body is None or not runs:
            continue
        conf = {k: v for k, v in runs[0].conf.items() if k not in ADDED_CONF_KEYS}
        if runs[0].dag_id != maker.body.get("dag_id") or conf != maker.body.get("conf", {}):
            foreign.append(f"{key}: run {runs[0].dag_id} {conf} vs first request {maker.body}")
    found = []
    if doubled:
        found.append(
            Violation("one run per key", tuple(doubled), "several DAGs hold the key's run")
        )
    if foreign:
        found.append(
            Violation("one run per key", tuple(foreign), "the run is not the first request's")
        )
    return found


def check_no_run_for_rejected_or_aborted(facts: Facts) -> list[Violation]:
    """No run for a key only invalid or aborted records carried, nor for an unknown DAG."""
    valid = set(facts.makers)
    suspects: set[str] = set()
    for request in facts.requests:
        if request.key is not None and request.kind == INVALID:
            suspects.add(request.key)
    for message in facts.history.aborted:
        for request in _requests_of(facts.history, message):
            if request.key is not None:
                suspects.add(request.key)
    # a DAG Airflow does not know: its requests are answered `error`, never with a run
    missing = {k for k, m in facts.makers.items() if (m.body or {}).get("dag_id") == MISSING_DAG}
    made = sorted(k for k in (suspects - valid) | missing if run_id_of(k) in facts.runs)
    if not made:
        return []
    return [Violation("no run for a rejected or aborted request", tuple(made), "the run exists")]


def check_run_for_answers(facts: Facts) -> list[Violation]:
    """Every `triggered` (and `duplicate`) reply names a run that exists in its DAG."""
    missing = set()
    for answers in facts.answers.values():
        for answer in answers:
            if answer.get("status") not in ("triggered", "duplicate"):
                continue
            runs = facts.runs.get(str(answer.get("dag_run_id")), [])
            if not any(r.dag_id == answer.get("dag_id") for r in runs):
                missing.add(f"{answer.get('idempotency_key')} ({answer.get('status')})")
    if not missing:
        return []
    return [
        Violation("a run for every triggered", tuple(sorted(missing)), "no such run in Airflow")
    ]


def _killed_sender(facts: Facts, reply: dict[str, Any]) -> int | None:
    """The pid of a reply built by a process before the nemesis killed it, else None."""
    tail = str(reply.get("worker", "?")).split("/")[0].rsplit("-", 1)[-1]
    pid = int(tail) if tail.isdigit() else None
    killed_at = facts.history.killed.get(pid) if pid is not None else None
    built = reply.get("processed_at")
    if killed_at is None or not isinstance(built, str):
        return None
    return pid if datetime.fromisoformat(built) <= killed_at else None


def check_completed_once(facts: Facts) -> list[Violation]:
    """A tracked run that ended gets exactly one `completed` reply, naming its final state.

    The one limit the README names for a run's `completed`: a replica SIGKILLed while the
    reply was in flight (or acknowledged but not yet recorded) leaves it to its successor,
    which sends it again. So besides one reply, a run may have one more from each killed
    process, built before its kill; all must name the run's final state.
    """
    found = []
    for key, replies in facts.completed.items():
        senders = [str(r.get("worker", "?")).split("/")[0] for r in replies]
        excused = {_killed_sender(facts, reply) for reply in replies} - {None}
        twice = len(set(senders)) < len(senders)  # one process never sends it twice
        if twice or len(replies) - len(excused) > 1:
            found.append(f"{key}: {len(replies)} completed replies from {senders}")
    for key, maker in facts.makers.items():
        if maker.body is None or maker.body.get("track") is not True:
            continue
        runs = facts.runs.get(run_id_of(key), [])
        if not runs or runs[0].state not in FINAL_STATES:
            continue
        replies = facts.completed.get(key, [])
        if not replies:
            found.append(f"{key}: run {runs[0].state}, no completed reply")
        elif any(r.get("run_state") != runs[0].state for r in replies):
            found.append(
                f"{key}: run {runs[0].state}, replies say {[r.get('run_state') for r in replies]}"
            )
    return [Violation("completed once per tracked run", tuple(found))] if found else []


def check_lag(facts: Facts) -> list[Violation]:
    """The group committed every partition of the request and event topics to its end."""
    behind = [
        f"{topic}-{partition}: committed {facts.history.committed.get((topic, partition))} of {end}"
        for (topic, partition), end in sorted(facts.history.ends.items())
        if end and facts.history.committed.get((topic, partition)) != end
    ]
    return [Violation("lag 0 at the end", tuple(behind))] if behind else []


def check_ready(facts: Facts) -> list[Violation]:
    """Every replica answers /readyz 200 at the end."""
    unready = [
        f"{name}: {status} {reasons}"
        for name, (status, reasons) in sorted(facts.history.readiness.items())
        if status != 200
    ]
    return [Violation("every replica ready at the end", tuple(unready))] if unready else []


def check_no_deaths(facts: Facts) -> list[Violation]:
    """No replica exited without the nemesis killing it."""
    deaths = tuple(facts.history.deaths)
    return [Violation("no replica died of its own accord", deaths)] if deaths else []


def check_dead_letters(facts: Facts) -> list[Violation]:
    """Every `rejected` or `error` answer has a dead letter naming the request's position."""
    lettered = {
        (m.header("source-topic"), m.header("source-partition"), m.header("source-offset"))
        for m in facts.history.dead_letters
    }
    missing = sorted(
        {
            f"{a.get('idempotency_key')} ({topic}-{partition}@{offset})"
            for (topic, partition, offset, _), answers in facts.answers.items()
            for a in answers
            if a.get("status") in ("rejected", "error")
            and (topic, str(partition), str(offset)) not in lettered
        }
    )
    return (
        [Violation("every rejected or error answer dead-lettered", tuple(missing))]
        if missing
        else []
    )


INVARIANTS: tuple[Callable[[Facts], list[Violation]], ...] = (
    check_answered,
    check_agreement,
    check_maker_triggered,
    check_one_run_per_key,
    check_no_run_for_rejected_or_aborted,
    check_run_for_answers,
    check_completed_once,
    check_dead_letters,
    check_lag,
    check_ready,
    check_no_deaths,
)


def check(
    history: History, invariants: Iterable[Callable[[Facts], list[Violation]]] = INVARIANTS
) -> list[Violation]:
    """Every violation of ``invariants`` (all of them by default) in ``history``."""
    facts = gather(history)
    return [violation for invariant in invariants for violation in invariant(facts)]


def summarize(history: History) -> dict[str, object]:
    """Counts that show what a trial exercised: requests by kind, replies by status, runs."""
    facts = gather(history)
    kinds = Counter(m.header(KIND_HEADER) for m in history.requests)
    statuses = Counter(a.get("status") for answers in facts.answers.values() for a in answers)
    return {
        "requests": dict(sorted(kinds.items())),
        "aborted": len(history.aborted),
        "replies": dict(sorted(statuses.items(), key=str)),
        "completed": sum(len(c) for c in facts.completed.values()),
        "dead_letters": len(history.dead_letters),
        "runs": len(history.runs),
    }
