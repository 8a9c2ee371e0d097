"""Rendering an audit: a table for people, one JSON document for machines, one summary line.

Nothing secret is rendered: the store URL is shown with its passwords masked
(``store.redaction.display_url``), Airflow by its URL, which never carries credentials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumer.audit.history import Place, Request
from consumer.audit.reconcile import Report, Unanswered
from consumer.replay import OffsetRange

CELL = 48  # the widest a table cell gets; JSON keeps values whole


@dataclass(frozen=True)
class Sources:
    """What an audit read, named for the report.

    Attributes:
        request_topic: the audited topic.
        ranges: the offset range read per partition.
        reply_topics: the reply topics read.
        dlq_topic: the dead-letter topic.
        group: the consumer group whose commits were compared.
        store: the store URL, passwords masked; None when no store was read.
        airflow: Airflow's URL.
        api_version: the API the runs were listed from; None when none were listed.
        runs: how many runs were listed.
        dags: the DAGs the audit was narrowed to (``--dag``); empty: all.
    """

    request_topic: str
    ranges: Mapping[int, OffsetRange]
    reply_topics: Sequence[str]
    dlq_topic: str
    group: str
    store: str | None
    airflow: str
    api_version: str | None
    runs: int
    dags: Sequence[str] = ()


def summary(report: Report, repaired: int | None = None) -> str:
    """The one line that says how the audit came out.

    Args:
        report: the findings.
        repaired: requests re-driven by ``--repair`` (acknowledged), or None without it.

    Returns:
        ``audit: N requests, …: agrees`` or ``…: DISAGREES``.
    """
    unanswered = report.unanswered
    committed = sum(1 for item in unanswered if item.committed)
    dead = sum(report.dead_letters.values())
    parts = [
        _count(report.requests, "request"),
        f"{report.answered} answered",
        f"{len(unanswered)} without a reply ({committed} committed, "
        f"{len(unanswered) - committed} not)",
        f"{len(report.superseded)} superseded",
        _count(len(report.missing_runs), "run", " missing"),
        _count(len(report.orphan_runs), "run", " without a request"),
        _count(len(report.disagreeing), "key", " disagreeing"),
        f"{len(report.not_dead_lettered)} not dead-lettered",
        f"{dead} dead-lettered" + (f" ({_counts(report.dead_letters)})" if dead else ""),
    ]
    if repaired is not None:
        parts.append(f"repaired {repaired}")
    verdict = "agrees" if report.agrees else "DISAGREES"
    return f"audit: {', '.join(parts)}: {verdict}"


def render_json(report: Report, sources: Sources, repaired: int | None = None) -> dict[str, Any]:
    """The report as one JSON-ready document (``--json``).

    Args:
        report: the findings.
        sources: what was read.
        repaired: requests re-driven by ``--repair``, or None without it.

    Returns:
        A dict of JSON values.
    """
    return {
        "request_topic": sources.request_topic,
        "dags": list(sources.dags),
        "ranges": {str(p): [r.start, r.stop] for p, r in sorted(sources.ranges.items())},
        "reply_topics": list(sources.reply_topics),
        "dead_letter_topic": sources.dlq_topic,
        "group": sources.group,
        "store": sources.store,
        "airflow": {"url": sources.airflow, "api_version": sources.api_version},
        "requests": report.requests,
        "answered": report.answered,
        "runs_listed": sources.runs,
        "agrees": report.agrees,
        "unanswered": [_unanswered(item) for item in report.unanswered],
        "superseded": [_unanswered(item) for item in report.superseded],
        "missing_runs": [
            {
                "dag_id": missing.run[0],
                "dag_run_id": missing.run[1],
                "idempotency_key": missing.key,
                "requests": [_place(place) for place in missing.places],
                "evidence": list(missing.evidence),
            }
            for missing in report.missing_runs
        ],
        "orphan_runs": [
            {
                "dag_id": run.dag_id,
                "dag_run_id": run.dag_run_id,
                "state": run.state,
                "created": None if run.created is None else run.created.isoformat(),
            }
            for run in report.orphan_runs
        ],
        "disagreeing_keys": [
            {
                "idempotency_key": found.key,
                "reasons": list(found.reasons),
                "replies": [
                    {
                        "source": _place(answer.source),
                        "status": answer.status,
                        "dag_id": answer.dag_id,
                        "dag_run_id": answer.dag_run_id,
                        "error_code": answer.error_code,
                        "topic": answer.topic,
                    }
                    for answer in found.answers
                ],
            }
            for found in report.disagreeing
        ],
        "not_dead_lettered": [_request(request) for request in report.not_dead_lettered],
        "dead_letters": dict(report.dead_letters),
        "repaired": repaired,
        "summary": summary(report, repaired),
    }


def render_table(report: Report, sources: Sources, repaired: int | None = None) -> str:
    """The report as text for a person: what was read, one table per finding, the summary.

    Args:
        report: the findings.
        sources: what was read.
        repaired: requests re-driven by ``--repair``, or None without it.

    Returns:
        Lines of text, ending with the summary line.
    """
    ranges = ", ".join(f"{p}:[{r.start},{r.stop})" for p, r in sorted(sources.ranges.items()))
    api = f" (API {sources.api_version})" if sources.api_version else ""
    dags = f" (DAGs {', '.join(sources.dags)})" if sources.dags else ""
    lines = [
        f"request topic {sources.request_topic}, offsets {ranges or 'none'}{dags}",
        f"replies from {', '.join(sources.reply_topics)}; dead letters from {sources.dlq_topic}; "
        f"commits of group {sources.group}",
        f"store {sources.store or 'none'}; {sources.runs} runs listed by {sources.airflow}{api}",
    ]
    lines += _section(
        "Requests without a reply",
        ["REQUEST", "KEY", "DAG", "COMMITTED", "RUN", "STORE"],
        [
            [
                _where(item.request.place),
                item.request.key,
                item.request.dag_id,
                "yes" if item.committed else "no",
                {True: "exists", False: "none", None: "-"}[item.run_exists],
                item.claim,
            ]
            for item in report.unanswered
        ],
    )
    lines += _section(
        "Runs that replies or the store name and Airflow does not have",
        ["DAG", "RUN ID", "CLAIMED BY", "REQUESTS"],
        [
            [m.run[0], m.run[1], ", ".join(m.evidence), " ".join(map(_where, m.places))]
            for m in report.missing_runs
        ],
    )
    lines += _section(
        "kafka__ runs without a request in the range",
        ["DAG", "RUN ID", "STATE", "CREATED"],
        [[r.dag_id, r.dag_run_id, r.state, _time(r.created)] for r in report.orphan_runs],
    )
    lines += _section(
        "Keys answered with disagreeing statuses",
        ["KEY", "WHAT DISAGREES"],
        [[found.key, "; ".join(found.reasons)] for found in report.disagreeing],
    )
    lines += _section(
        "Answered rejected or error without a dead letter",
        ["REQUEST", "KEY", "DAG"],
        [[_where(r.place), r.key, r.dag_id] for r in report.not_dead_lettered],
    )
    lines += _section(
        "Dead-lettered requests by error code",
        ["ERROR CODE", "REQUESTS"],
        [[code, str(n)] for code, n in report.dead_letters.items()],
    )
    lines += _section(
        "Superseded (no reply of their own; a later request of the key was answered)",
        ["REQUEST", "KEY", "ANSWERED AT"],
        [
            [_where(item.request.place), item.request.key, _where(item.superseded_by)]
            for item in report.superseded
            if item.superseded_by is not None
        ],
    )
    return "\n".join([*lines, "", summary(report, repaired)])


def _section(title: str, header: list[str], rows: list[list[str | None]]) -> list[str]:
    if not rows:
        return ["", f"{title}: none"]
    # every cell but the last is cut to CELL characters; the last one has the room to the right
    cells = [[*map(_cell, row[:-1]), _cell(row[-1], limit=None)] for row in rows]
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=True)]
    lines = ["", f"{title} ({len(rows)})"]
    for row in [header, *cells]:
        lines.append(
            "  " + "  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)).rstrip()
        )
    return lines


def _cell(value: str | None, limit: int | None = CELL) -> str:
    if value is None:
        return "-"
    flat = value.replace("\n", " ")
    return flat if limit is None or len(flat) <= limit else flat[: limit - 1] + "…"


def _where(place: Place) -> str:
    return f"{place[0]}/{place[1]}@{place[2]}"


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _count(n: int, noun: str, rest: str = "") -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}{rest}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{code}={n}" for code, n in counts.items())


def _place(place: Place) -> dict[str, Any]:
    return {"topic": place[0], "partition": place[1], "offset": place[2]}


def _request(request: Request) -> dict[str, Any]:
    stamp = request.timestamp_ms
    return {
        **_place(request.place),
        "timestamp": None if stamp is None else _time(datetime.fromtimestamp(stamp / 1000, UTC)),
        "idempotency_key": request.key,
        "dag_id": request.dag_id,
    }


def _unanswered(item: Unanswered) -> dict[str, Any]:
    later = item.superseded_by
    return {
        **_request(item.request),
        "committed": item.committed,
        "run_exists": item.run_exists,
        "store_status": item.claim,
        "superseded_by": None if later is None else _place(later),
    }
