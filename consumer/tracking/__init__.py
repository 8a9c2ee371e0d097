"""Completion tracking: the ``completed`` follow-up reply of requests with ``track`` (spec §2).

Modules:
    tracker     CompletionTracker: watches tracked runs to a final state and publishes
                their ``completed`` replies (its docstring draws the flow)
    completion  completed_outcome: a tracked run's ``completed`` outcome, from the store's entry
    window      EndedRunWindow: one listing per poll of the runs that ended since the last
    lease       LeaseKeeper: which replica watches a run, renewed and fenced on the store
"""

from __future__ import annotations

from consumer.tracking.completion import UNKNOWN_SOURCE, completed_outcome
from consumer.tracking.tracker import CompletionTracker, Publish, TrackerCounts

__all__ = ["UNKNOWN_SOURCE", "CompletionTracker", "Publish", "TrackerCounts", "completed_outcome"]
