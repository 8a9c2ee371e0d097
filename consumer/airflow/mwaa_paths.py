"""MWAA's 64-character ``Path``: run reads and clears of long run ids, sent another way.

``InvokeRestApi`` takes a path of at most 64 characters, and ``/dags/{dag_id}/dagRuns/
{run_id}`` of a ``kafka__<key>`` run is often longer. ``shorten`` sends such calls so that
the client sees the answer the long path would have given:

- a run read (``GET …/dagRuns/{run_id}``) lists the DAG's runs (``GET /dags/{dag_id}/
  dagRuns``, the run id in the query) and answers 200 with the run's item (the same schema
  as the read) or 404; Airflow 3 narrows by ``run_id_pattern`` (a LIKE pattern: the exact
  id is picked out), Airflow 2 has no run-id filter and pages newest first (``-id``: a run
  made meanwhile only pushes the others back, none is skipped);
- a clear (``POST …/dagRuns/{run_id}/clear``) becomes ``POST /dags/{dag_id}/
  clearTaskInstances`` for that run with ``reset_dag_runs`` (the same clear underneath:
  ``clear_task_instances`` queueing the run again);
- any other path over 64 characters (a dag_id over 50) is refused with 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote

Answer: TypeAlias = tuple[int, Any]
"""An HTTP status and the JSON body of an answer."""

Invoke: TypeAlias = Callable[[str, str, dict[str, Any], dict[str, Any] | None], Answer]
"""One ``InvokeRestApi`` call: (method, path, query, body) → answer."""

MAX_PATH = 64
PAGE = 100
RUN_READ = re.compile(r"/dags/([^/]+)/dagRuns/([^/]+)")
RUN_CLEAR = re.compile(r"/dags/([^/]+)/dagRuns/([^/]+)/clear")
HTTP_OK = 200


@dataclass(frozen=True)
class Call:
    """One REST call as the client made it.

    Attributes:
        method: the HTTP method.
        path: the path below ``/api/vN``, as quoted in the URL.
        query: the query parameters.
        body: the JSON body.
    """

    method: str
    path: str
    query: dict[str, Any]
    body: dict[str, Any] | None


def shorten(invoke: Invoke, api: str, call: Call) -> Answer:
    """Send a call, through a listing or another endpoint when its path is too long.

    Args:
        invoke: one ``InvokeRestApi`` call.
        api: the environment's API (``v1``/``v2``).
        call: the call.

    Returns:
        The answer the path itself would have given.
    """
    method, path, query, body = call.method, call.path, call.query, call.body
    if len(path) <= MAX_PATH:
        return invoke(method, path, query, body)
    read = RUN_READ.fullmatch(path)
    if method == "GET" and read is not None and not query:
        return read_run_by_listing(invoke, api, read[1], unquote(read[2]))
    clear = RUN_CLEAR.fullmatch(path)
    if method == "POST" and clear is not None:
        options = body or {}
        task_path = f"/dags/{clear[1]}/clearTaskInstances"
        if len(task_path) <= MAX_PATH:
            task_body = {
                "dag_run_id": unquote(clear[2]),
                "dry_run": bool(options.get("dry_run", True)),
                "only_failed": bool(options.get("only_failed", False)),
                "reset_dag_runs": True,
            }
            return invoke("POST", task_path, query, task_body)
    return 400, {
        "detail": f"the path {path[:100]} is longer than the {MAX_PATH} characters MWAA's "
        "InvokeRestApi takes (a dag_id of at most 50 characters fits)"
    }


def read_run_by_listing(invoke: Invoke, api: str, dag: str, run_id: str) -> Answer:
    """Read one run from its DAG's listing: 200 with the run, 404, or the listing's failure.

    Args:
        invoke: one ``InvokeRestApi`` call.
        api: ``v1`` or ``v2``.
        dag: the dag_id as quoted in the path.
        run_id: the run id wanted.

    Returns:
        The answer a read of the run would have given.
    """
    path = f"/dags/{dag}/dagRuns"
    if len(path) > MAX_PATH:
        return 400, {"detail": f"the dag_id {unquote(dag)[:100]} is too long for MWAA"}
    query = {"order_by": "-id", "limit": str(PAGE)}
    if api == "v2":
        query["run_id_pattern"] = run_id
    listed = 0
    while True:
        status, body = invoke("GET", path, {**query, "offset": str(listed)}, None)
        if status != HTTP_OK:
            return status, body
        runs = body.get("dag_runs") if isinstance(body, dict) else None
        if not isinstance(runs, list):
            return 502, {"detail": "MWAA's listing of DAG runs had no dag_runs"}
        for item in runs:
            if isinstance(item, dict) and item.get("dag_run_id") == run_id:
                return HTTP_OK, item
        listed += len(runs)
        total = body.get("total_entries")
        if len(runs) < PAGE or (isinstance(total, int) and listed >= total):
            return 404, {"detail": f"DAG run {run_id} not found among {listed} listed"}
