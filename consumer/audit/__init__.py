"""Audit: do a range of requests, its replies, dead letters, commits, store and runs agree?

`trigger-consumer audit` (issue 29) reads them all in bulk and reconciles them.

The parts, one concept each::

    reading.read_history ──► history.History ──► reconcile.reconcile ──► reconcile.Report
      (Kafka, store, Airflow;     (plain values)        (pure)                  │
       all in bulk)                                                 render (table, JSON)
                                                                     repair (replay's path)
"""

from __future__ import annotations

from consumer.audit import render
from consumer.audit.history import History
from consumer.audit.reading import Reading, read_history
from consumer.audit.reconcile import Report, reconcile
from consumer.audit.render import Sources
from consumer.audit.repair import repair

__all__ = [
    "History",
    "Reading",
    "Report",
    "Sources",
    "read_history",
    "reconcile",
    "render",
    "repair",
]
