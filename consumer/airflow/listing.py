"""RunLister: DAG runs read in pages from Airflow's list endpoints, never one GET per run.

An audit needs two views of Airflow's runs, on both API versions:

- ``touched_since(t)``: every run made or changed since ``t``, across all DAGs:
  ``GET /dags/~/dagRuns?updated_at_gte=t`` (``updated_at`` is the one filter both versions
  offer that bounds runs by when they were written, whatever their logical date; Airflow 3
  also narrows to ``run_id_prefix_pattern=kafka__``).
- ``find(runs)``: named runs that the first view left out (made before ``t`` and untouched
  since): Airflow 3 asks per DAG by run-id prefixes, a batch of ids per call
  (``run_id_prefix_pattern=a|b|c``); Airflow 2 has no run-id filter, so its
  ``POST /dags/~/dagRuns/list`` lists those DAGs' runs.

Pages hold ``LIST_PAGE`` runs (Airflow's default maximum page size), ordered by ``id``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import requests

from consumer.airflow.connection import AirflowConnection
from consumer.airflow.runs import parse_timestamp
from consumer.airflow.transport import Transport, read_json
from consumer.errors import AirflowError, ConfigError, ErrorCode

LIST_PAGE = 100
RUN_ID_BATCH = 25  # run ids per prefix-pattern call: keeps the URL well under 8 KiB
KAFKA_RUN_PREFIX = "kafka__"
DETAIL_LIMIT = 300

OnPage = Callable[[int, int], None]
"""Called after each page with the runs listed so far and the total Airflow announced."""


@dataclass(frozen=True)
class ListedRun:
    """One run of a listing: its ids, state and when it was made.

    Attributes:
        dag_id: the DAG.
        dag_run_id: the run's id.
        state: Airflow's state of it.
        created: when it was triggered, as far as the listing tells (``run_from_listing``).
    """

    dag_id: str
    dag_run_id: str
    state: str
    created: datetime | None


class RunLister:
    """Pages through Airflow's run listings; one instance per audit (not thread-safe)."""

    def __init__(self, connection: AirflowConnection, *, on_page: OnPage | None = None) -> None:
        """Configure the transport; nothing is sent before the first listing.

        Args:
            connection: where Airflow is and how to authenticate
                (``AirflowConnection.from_settings``).
            on_page: told the progress after each page.

        Raises:
            ConfigError: inconsistent credentials, a URL with credentials, a missing CA bundle.
        """
        self._transport = Transport(connection)
        self._on_page = on_page

    @property
    def api_version(self) -> str:
        """``v1`` or ``v2``, detected on first use."""
        return self._transport.api_version

    def close(self) -> None:
        """Close the pooled connections."""
        self._transport.close()

    def touched_since(self, since: datetime) -> list[ListedRun]:
        """Every run made or changed at or after ``since``, of every DAG the user may read.

        Args:
            since: an aware instant.

        Returns:
            The runs (on Airflow 3 only ``kafka__`` ones; on Airflow 2 all).

        Raises:
            AirflowUnavailableError: the retry budget ran out.
            AirflowError: Airflow refused the listing (``airflow_rejected``).
            ConfigError: credentials refused or TLS failure.
        """
        query: dict[str, str] = {
            "updated_at_gte": since.astimezone(UTC).isoformat(),
            "order_by": "id",
        }
        if self.api_version == "v2":
            query["run_id_prefix_pattern"] = KAFKA_RUN_PREFIX
        return list(self._get_pages("/dags/~/dagRuns", query))

    def find(self, runs: Collection[tuple[str, str]]) -> list[ListedRun]:
        """Look for named runs: those of them Airflow has (and on Airflow 2 their DAGs' others).

        Args:
            runs: (dag_id, dag_run_id) pairs.

        Returns:
            Listed runs; a named run that is absent does not exist.

        Raises:
            AirflowUnavailableError: the retry budget ran out.
            AirflowError: Airflow refused the listing (``airflow_rejected``).
            ConfigError: credentials refused or TLS failure.
        """
        if not runs:
            return []
        by_dag: dict[str, list[str]] = defaultdict(list)
        for dag_id, run_id in sorted(set(runs)):
            by_dag[dag_id].append(run_id)
        if self.api_version == "v1":
            return list(self._post_pages({"dag_ids": sorted(by_dag), "order_by": "id"}))
        found: list[ListedRun] = []
        for dag_id, run_ids in by_dag.items():
            path = f"/dags/{quote(dag_id, safe='')}/dagRuns"
            for start in range(0, len(run_ids), RUN_ID_BATCH):
                wanted = set(run_ids[start : start + RUN_ID_BATCH])
                query = {"run_id_prefix_pattern": "|".join(sorted(wanted)), "order_by": "id"}
                # a prefix also matches longer ids: keep the exact ones
                found += [
                    run
                    for run in self._get_pages(path, query, missing_ok=True)
                    if run.dag_run_id in wanted
                ]
        return found

    def _get_pages(
        self, path: str, query: dict[str, str], *, missing_ok: bool = False
    ) -> Iterator[ListedRun]:
        """Page through a GET listing; ``missing_ok``: a DAG Airflow does not know has no runs."""
        listed = 0
        while True:
            page = urlencode({**query, "limit": LIST_PAGE, "offset": listed})
            body = self._call("GET", f"{path}?{page}", None, missing_ok=missing_ok)
            if body is None:
                return
            items, total = _page_items(body)
            listed += len(items)
            yield from (run_from_listing(item) for item in items)
            if self._done(items, listed, total):
                return

    def _post_pages(self, body: dict[str, Any]) -> Iterator[ListedRun]:
        listed = 0
        while True:
            page = {**body, "page_limit": LIST_PAGE, "page_offset": listed}
            items, total = _page_items(self._call("POST", "/dags/~/dagRuns/list", page))
            listed += len(items)
            yield from (run_from_listing(item) for item in items)
            if self._done(items, listed, total):
                return

    def _done(self, items: list[dict[str, Any]], listed: int, total: int) -> bool:
        if self._on_page is not None:
            self._on_page(listed, total)
        return len(items) < LIST_PAGE or listed >= total

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, missing_ok: bool = False
    ) -> Any:
        state = self._transport.retry.start()
        response, state = self._transport.request(state, method, path, body=body)
        if response.ok:
            return read_json(response)
        if missing_ok and response.status_code == requests.codes.not_found:
            return None
        status = response.status_code
        detail = _detail(response)
        if status in {requests.codes.unauthorized, requests.codes.forbidden}:
            raise ConfigError(
                f"Airflow at {self._transport.base_url} refused to list DAG runs "
                f"({status}: {detail}); the user needs read access to DAG runs"
            )
        raise AirflowError(
            ErrorCode.AIRFLOW_REJECTED,
            f"Airflow answered {status} to {method} {path.partition('?')[0]}: {detail}",
            {"status": status, "attempts": state.attempts},
        )


def _page_items(body: Any) -> tuple[list[dict[str, Any]], int]:
    runs = body.get("dag_runs") if isinstance(body, dict) else None
    if not isinstance(runs, list):
        raise AirflowError(ErrorCode.AIRFLOW_REJECTED, "Airflow listed no DAG runs")
    items = [item for item in runs if isinstance(item, dict)]
    total = body.get("total_entries")
    return items, total if isinstance(total, int) else len(items)


def run_from_listing(item: dict[str, Any]) -> ListedRun:
    """One listed run from its JSON item, on either API version.

    Args:
        item: an element of the listing's ``dag_runs``.

    Returns:
        The run. Its ``created``: on Airflow 3 ``run_after`` (the trigger's time, which a
        clear keeps, unlike ``queued_at``); on Airflow 2, which tells no creation time, the
        earlier of execution (logical) date and start date: the trigger's time for a run
        triggered without a logical date.
    """
    if "run_after" in item:
        created = parse_timestamp(item.get("run_after")) or parse_timestamp(item.get("queued_at"))
    else:
        dates = (
            parse_timestamp(item.get(name))
            for name in ("execution_date", "logical_date", "start_date")
        )
        created = min(filter(None, dates), default=None)
    return ListedRun(
        dag_id=str(item.get("dag_id") or ""),
        dag_run_id=str(item.get("dag_run_id") or ""),
        state=str(item.get("state") or "unknown"),
        created=created,
    )


def _detail(response: requests.Response) -> str:
    body = read_json(response)
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    return str(detail if detail is not None else response.reason or "no detail")[:DETAIL_LIMIT]
