"""The request pipeline of spec §1: decode → validate → policy → dedup → trigger → reply/DLQ.

Each stage is its own module. The pure ones run through ``screen`` (``screen.py``), which this
face re-exports; importing it loads no I/O library, so offline ``validate`` and the routes use
it without loading Airflow's client or the store. The worker's ``Pipeline`` (triage on the
loop thread, execute on a dispatcher thread) lives in ``pipeline.py``.
"""

from consumer.pipeline.screen import Refusal, attempt, screen

__all__ = ["Refusal", "attempt", "screen"]
