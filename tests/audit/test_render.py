"""The audit's table, JSON document and summary line (pure)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from consumer.audit.history import Answer, Request, Run
from consumer.audit.reconcile import DisagreeingKey, MissingRun, Report, Unanswered
from consumer.audit.render import Sources, render_json, render_table, summary
from consumer.replay import OffsetRange

SOURCES = Sources(
    request_topic="requests",
    ranges={0: OffsetRange(0, 6), 1: OffsetRange(2, 2)},
    reply_topics=("replies", "team-replies"),
    dlq_topic="dlq",
    group="workers",
    store="postgresql://svc:***@db/store",
    airflow="https://airflow.example.com",
    api_version="v2",
    runs=12,
)
REQUEST = Request(("requests", 0, 4), 1_765_108_800_000, "k4", "load", None)
REPORT = Report(
    requests=6,
    answered=4,
    unanswered=(Unanswered(REQUEST, committed=True, run_exists=False, claim="pending"),),
    superseded=(
        Unanswered(
            Request(("requests", 0, 1), None, "k1", "load"),
            committed=True,
            run_exists=True,
            claim="triggered",
            superseded_by=("requests", 0, 5),
        ),
    ),
    missing_runs=(
        MissingRun(("load", "kafka__k2"), "k2", (("requests", 0, 2),), ("reply triggered",)),
    ),
    orphan_runs=(Run("load", "kafka__stray", "success", datetime(2026, 12, 7, 12, tzinfo=UTC)),),
    disagreeing=(
        DisagreeingKey(
            "k3",
            ("replies name different runs: load/kafka__k3, load/kafka__x",),
            (Answer(("requests", 0, 3), "triggered", "k3", "load", "kafka__k3"),),
        ),
    ),
    dead_letters={"dag_not_found": 2},
)


def test_the_summary_line_counts_every_finding() -> None:
    """One line: requests, replies, each finding, dead letters per code and the verdict."""
    assert summary(REPORT, repaired=1) == (
        "audit: 6 requests, 4 answered, 1 without a reply (1 committed, 0 not), 1 superseded, "
        "1 run missing, 1 run without a request, 1 key disagreeing, 0 not dead-lettered, "
        "2 dead-lettered (dag_not_found=2), repaired 1: DISAGREES"
    )
    assert summary(Report(requests=0, answered=0)) == (
        "audit: 0 requests, 0 answered, 0 without a reply (0 committed, 0 not), 0 superseded, "
        "0 runs missing, 0 runs without a request, 0 keys disagreeing, 0 not dead-lettered, "
        "0 dead-lettered: agrees"
    )


def test_the_json_document_holds_every_finding() -> None:
    """--json: one document with the sources, each finding's rows and the summary."""
    doc = render_json(REPORT, SOURCES, repaired=None)
    json.dumps(doc)  # JSON-ready
    assert doc["agrees"] is False
    assert doc["ranges"] == {"0": [0, 6], "1": [2, 2]}
    assert doc["airflow"] == {"url": "https://airflow.example.com", "api_version": "v2"}
    assert doc["unanswered"] == [
        {
            "topic": "requests",
            "partition": 0,
            "offset": 4,
            "timestamp": "2025-12-07T12:00:00+00:00",
            "idempotency_key": "k4",
            "dag_id": "load",
            "committed": True,
            "run_exists": False,
            "store_status": "pending",
            "superseded_by": None,
        }
    ]
    assert doc["superseded"][0]["superseded_by"] == {
        "topic": "requests",
        "partition": 0,
        "offset": 5,
    }
    assert doc["missing_runs"][0]["evidence"] == ["reply triggered"]
    assert doc["orphan_runs"][0]["dag_run_id"] == "kafka__stray"
    assert doc["disagreeing_keys"][0]["replies"][0]["status"] == "triggered"
    assert doc["dead_letters"] == {"dag_not_found": 2}
    assert doc["summary"] == summary(REPORT)


def test_the_table_has_a_section_per_finding() -> None:
    """The table names what was read, lists each finding with a header row, ends in the summary."""
    text = render_table(REPORT, SOURCES)
    lines = text.splitlines()
    assert lines[0] == "request topic requests, offsets 0:[0,6), 1:[2,2)"
    assert "Requests without a reply (1)" in lines
    header = lines[lines.index("Requests without a reply (1)") + 1].split()
    assert header == ["REQUEST", "KEY", "DAG", "COMMITTED", "RUN", "STORE"]
    assert lines[lines.index("Requests without a reply (1)") + 2].split() == [
        "requests/0@4",
        "k4",
        "load",
        "yes",
        "none",
        "pending",
    ]
    assert "Answered rejected or error without a dead letter: none" in lines
    assert "  dag_not_found  2" in lines
    assert lines[-1] == summary(REPORT)


def test_the_dags_an_audit_was_narrowed_to_are_named() -> None:
    """--dag shows in the table's first line and in the JSON document."""
    narrowed = replace(SOURCES, dags=("load", "report"))
    first = render_table(Report(requests=0, answered=0), narrowed).splitlines()[0]
    assert first == "request topic requests, offsets 0:[0,6), 1:[2,2) (DAGs load, report)"
    assert render_json(Report(requests=0, answered=0), narrowed)["dags"] == ["load", "report"]


def test_long_cells_are_cut_in_the_table_only() -> None:
    """A 256-character key is cut in its cell; the JSON keeps it whole."""
    key = "x" * 256
    long = Unanswered(Request(("requests", 0, 0), None, key, "d"), True, None, None)
    report = Report(requests=1, answered=0, unanswered=(long,))
    assert "x" * 47 + "…" in render_table(report, SOURCES)
    assert key not in render_table(report, SOURCES)
    assert render_json(report, SOURCES)["unanswered"][0]["idempotency_key"] == key
