"""Clear a DAG run so it runs again (issue 29, the operator's ``reset_dag_run``), at most once.

A clear is not idempotent: cleared twice, a run that had started again is cut short and
restarted. So every clear is guarded by the run's ``RunClock``, read before it and kept in
the store with the re-run's pending mark; ``ensure_cleared`` reads the clock again and
clears only when it has not moved since (a crash between the clear and the store write,
or a clear whose answer was lost, is then seen, not repeated)::

    before = clearing.clock(dag_id, run_id)       # None: no such run
    ... store: mark the re-run pending with before.text() ...
    after = clearing.ensure_cleared(dag_id, run_id, before, only_failed=False)

What moves on a clear, measured in the installed sources: Airflow 3 (3.3.2) sets the run's
``queued_at`` on every clear; Airflow 2 (2.11.2) does not expose ``queued_at`` but sets a
finished run's ``start_date`` to null (a new one when it starts again). A run that was not
finished when read on Airflow 2 shows no trace of a clear: clearing it again is harmless,
as none of its tasks had finished since.

Endpoints: Airflow 3 ``POST /api/v2/dags/{dag_id}/dagRuns/{run_id}/clear`` with
``dry_run: false`` (its default is true) and ``only_failed``; Airflow 2 ``POST
/api/v1/dags/{dag_id}/dagRuns/{run_id}/clear`` (``dry_run`` only), or, for ``only_failed``,
``POST /api/v1/dags/{dag_id}/clearTaskInstances`` for that run with ``reset_dag_runs``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from consumer.airflow.client import AirflowClient
from consumer.airflow.retry import SINGLE_ATTEMPT
from consumer.airflow.runs import parse_timestamp
from consumer.airflow.transport import read_json, run_path
from consumer.errors import AirflowError, ErrorCode, StoppingError

FINISHED = frozenset({"success", "failed"})


@dataclass(frozen=True)
class RunClock:
    """What a clear changes in a run, as Airflow reports it.

    Attributes:
        state: the run's state.
        queued_at: when the run was last queued (Airflow 3 only; None on Airflow 2).
        start_date: when the run last started, or None.
    """

    state: str
    queued_at: datetime | None
    start_date: datetime | None

    def text(self) -> str:
        """The clock as the store keeps it (JSON)."""
        return json.dumps(
            {
                "state": self.state,
                "queued_at": _iso(self.queued_at),
                "start_date": _iso(self.start_date),
            },
            sort_keys=True,
        )

    @classmethod
    def from_text(cls, text: str) -> RunClock | None:
        """Read a clock ``text()`` wrote; None for text that is not one (nothing to go by)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("state"), str):
            return None
        return cls.from_body(data)

    @property
    def shows_a_clear(self) -> bool:
        """Whether a clear of the run as it is now would leave a trace in its clock.

        Airflow 3 sets ``queued_at`` on every clear; Airflow 2 (no ``queued_at``) resets
        only a finished run's ``start_date``: a run it has not finished could be cleared
        twice after a crash, unseen.
        """
        return self.queued_at is not None or self.state in FINISHED

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> RunClock:
        """Read the clock of a run from Airflow's JSON of it."""
        return cls(
            state=str(body.get("state") or "unknown"),
            queued_at=parse_timestamp(body.get("queued_at")),
            start_date=parse_timestamp(body.get("start_date")),
        )


@dataclass(frozen=True)
class Clocked:
    """A run's clock and the HTTP calls it took to get there.

    Attributes:
        clock: the run's clock.
        attempts: HTTP calls made (retries included).
        cleared: (``ensure_cleared``) whether the run shows a clear since the clock it was
            given: False when Airflow had nothing to clear (``only_failed``, none failed).
    """

    clock: RunClock
    attempts: int
    cleared: bool = False


def cleared_since(before: RunClock, now: RunClock) -> bool:
    """Whether the run was cleared between two readings of its clock.

    Args:
        before: the clock read before the clear.
        now: the clock read now.

    Returns:
        True when a clear shows: a new ``queued_at`` (Airflow 3), or a finished run whose
        ``start_date`` changed (Airflow 2). False when nothing shows one.
    """
    if before.queued_at is not None or now.queued_at is not None:
        return now.queued_at != before.queued_at
    return before.state in FINISHED and now.start_date != before.start_date


class RunClearing:
    """Reads a run's clock and clears the run, through an ``AirflowClient``'s transport."""

    def __init__(self, client: AirflowClient) -> None:
        """Use ``client``'s connection, credentials, API version and call counting."""
        self._client = client

    def clock(self, dag_id: str, run_id: str) -> Clocked:
        """Read the run's clock (one GET, retried within the client's budget).

        Raises:
            AirflowUnavailableError: the retry budget ran out.
            AirflowError: Airflow refused the call; ``dag_not_found`` when it knows no
                such run (deleted since it was made).
            ConfigError: credentials refused or TLS failure.
        """
        client = self._client
        path = run_path(dag_id, run_id)
        response, state = client.transport.request(client.retry.start(), "GET", path)
        if response.status_code == requests.codes.not_found:
            raise AirflowError(
                ErrorCode.DAG_NOT_FOUND,
                f"Airflow knows no run {run_id} of DAG {dag_id} to re-run (deleted?)",
                {"dag_id": dag_id, "dag_run_id": run_id, "attempts": state.attempts},
            )
        if not response.ok:
            raise client.refusal(response, state)
        body = read_json(response)
        return Clocked(RunClock.from_body(body if isinstance(body, dict) else {}), state.attempts)

    def ensure_cleared(
        self,
        dag_id: str,
        run_id: str,
        before: RunClock,
        *,
        only_failed: bool,
        owned: Callable[[], bool],
    ) -> Clocked:
        """Clear the run unless its clock moved since ``before``; return its clock after.

        The clear is sent once (no retry inside): a lost answer surfaces as
        ``AirflowUnavailableError``, and the next call reads the clock before clearing.
        ``owned`` is asked right before the clear: a partition that moved meanwhile is
        its new owner's to clear.

        Raises:
            AirflowUnavailableError: Airflow did not answer (the clear may have happened).
            AirflowError: Airflow refused the call (``dag_not_found`` when the run is gone;
                ``airflow_rejected`` when the worker may not clear runs: 403).
            StoppingError: the partition was revoked before the clear.
            ConfigError: credentials refused or TLS failure.
        """
        now = self.clock(dag_id, run_id)
        if cleared_since(before, now.clock):
            return replace(now, cleared=True)
        if not owned():
            raise StoppingError("partition revoked before the clear")
        client = self._client
        path, body = _clear_call(client.api_version, dag_id, run_id, only_failed=only_failed)
        response, state = client.transport.request(SINGLE_ATTEMPT.start(), "POST", path, body=body)
        if response.status_code == requests.codes.forbidden:
            # the trigger's credentials work (the clock was read): a permission to clear
            # (PUT on DAG runs) is missing, a refusal of this request, not a fatal error
            raise AirflowError(
                ErrorCode.AIRFLOW_REJECTED,
                f"Airflow refused to clear run {run_id} of {dag_id} (403): the worker's user "
                "needs permission to edit DAG runs (and task instances, for only_failed on "
                "Airflow 2) to re-run them",
                {"status": 403, "attempts": now.attempts + state.attempts},
            )
        if not response.ok:
            raise client.refusal(response, state)
        after = self.clock(dag_id, run_id)
        attempts = now.attempts + state.attempts + after.attempts
        return Clocked(after.clock, attempts, cleared=cleared_since(before, after.clock))


def _clear_call(
    api_version: str, dag_id: str, run_id: str, *, only_failed: bool
) -> tuple[str, dict[str, Any]]:
    """The path and body of the clear on this API version."""
    dag = quote(dag_id, safe="")
    if api_version == "v2":
        return f"{run_path(dag_id, run_id)}/clear", {"dry_run": False, "only_failed": only_failed}
    if not only_failed:
        return f"{run_path(dag_id, run_id)}/clear", {"dry_run": False}
    return f"/dags/{dag}/clearTaskInstances", {
        "dry_run": False,
        "dag_run_id": run_id,
        "only_failed": True,
        "reset_dag_runs": True,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
