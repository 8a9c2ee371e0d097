"""AirflowClient: the worker's only door into Airflow (spec §3 Idempotency and Failures, §4).

It speaks Airflow 3 (``/api/v2``) and Airflow 2 (``/api/v1``): version-specific payloads and
UI links, 409 resolved by reading the run (duplicate or logical-date clash), and status codes
mapped to error codes. It is built from an ``AirflowConnection`` (``connection.py``); the HTTP
side (retries, auth, detection) lives in ``transport.py``.

What each version does for a paused DAG (measured on 3.3.2 and 2.11.2, ``tests/airflow``):
both answer 200 and create the run in state ``queued``, where it stays until the DAG is
unpaused; nothing in the answer says the DAG is paused, so the client reads ``is_paused``
from ``GET /dags/{dag_id}`` (cached for ``dag_info_ttl`` seconds) into ``dag_paused``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import requests

from consumer.airflow.calls import CallPurpose, CountCalls, count_nothing
from consumer.airflow.connection import AirflowConnection
from consumer.airflow.retry import SINGLE_ATTEMPT, RetryState
from consumer.airflow.runs import ApiVersion, DagRun, EndedRuns, TriggerResult, parse_timestamp
from consumer.airflow.transport import RUN_ID_SAFE, Transport, read_json, run_path
from consumer.errors import AirflowError, ConfigError, ErrorCode
from consumer.provenance import source_of

DETAIL_LIMIT = 2000

# spec §3 and facts §7.3: Airflow 2 answers a bad run id with a 500 HTML page, so never send one
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_.~:+-]{1,248}")
RESERVED_RUN_ID_PREFIXES = ("scheduled__", "backfill__", "asset_triggered__", "dataset_triggered__")
DAG_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,250}")

# the batch list endpoint of both API versions; pages of Airflow's default maximum size
LIST_PATH = "/dags/~/dagRuns/list"
LIST_PAGE = 100
ENDED_STATES = frozenset({"success", "failed"})
UNLISTABLE = frozenset({404, 405})
# the probe's trigger POST names the DAG ``~``: no DAG can have that id (Airflow's dag_id
# charset), so the endpoint answers 404 after its metadata-database look-up and never makes a run
PROBE_PATH = "/dags/~/dagRuns"
PROBE_RUN_ID = "trigger-consumer-probe"


class AirflowClient:
    """A thread-safe client for the Airflow 3 (``/api/v2``) and Airflow 2 (``/api/v1``) API."""

    def __init__(
        self,
        connection: AirflowConnection,
        *,
        stop: threading.Event | None = None,
        purpose: CallPurpose = CallPurpose.TRIGGER,
        count_calls: CountCalls = count_nothing,
    ) -> None:
        """Configure the client; nothing is sent until the first call.

        Args:
            connection: where Airflow is, the credentials, timeouts, retry policy and pool
                (``AirflowConnection.from_settings``).
            stop: when set, a call waiting to retry gives up at once (shutdown).
            purpose: what this client's calls are for (their counter's label).
            count_calls: binds the per-purpose hook each HTTP request calls (``calls.py``).

        Raises:
            ConfigError: inconsistent credentials, a URL with credentials, a missing CA bundle.
        """
        self.transport = Transport(connection, stop=stop, purpose=purpose, count_calls=count_calls)
        self.base_url = self.transport.base_url
        self.retry = self.transport.retry
        self._dag_info_ttl = connection.dag_info_ttl
        self._paused: dict[str, tuple[bool, float]] = {}

    def __repr__(self) -> str:
        """Name the server and API, never a credential."""
        return f"AirflowClient({self.transport!r})"

    def __enter__(self) -> AirflowClient:
        """Use the client as a context manager that closes its session."""
        return self

    def __exit__(self, *_: object) -> None:
        """Close the session."""
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.transport.close()

    @property
    def api_version(self) -> ApiVersion:
        """The REST API in use, detected on first access when ``auto``."""
        return self.transport.api_version

    def ping(self) -> str:
        """Check that Airflow answers and accepts the credentials; one attempt, no retries.

        Returns:
            Airflow's version string.

        Raises:
            AirflowUnavailableError: Airflow is unreachable or answered 429/5xx.
            ConfigError: credentials refused, TLS failure, or not an Airflow.
        """
        state = SINGLE_ATTEMPT.start()
        response, state = self.transport.request(state, "GET", "/version")
        if not response.ok:
            raise self.refusal(response, state)
        body = read_json(response)
        version = body.get("version") if isinstance(body, dict) else None
        return version if isinstance(version, str) else "unknown"

    def probe_trigger(self) -> bool:
        """Whether the trigger endpoint serves: one POST for a DAG that cannot exist.

        The answer (404 after the endpoint read its metadata database) proves that a trigger
        gets a definite answer; a failure, a transient status or refused credentials prove
        nothing. One attempt, no retries, never raises.

        Returns:
            True when the endpoint gave a definite answer.
        """
        try:
            body = self._payload(PROBE_RUN_ID, None, None, None)  # may detect the version
            response, _ = self.transport.request(
                SINGLE_ATTEMPT.start(), "POST", PROBE_PATH, body=body
            )
        except (AirflowError, ConfigError):  # unreachable, 5xx, TLS: nothing proven
            return False
        return response.status_code not in {requests.codes.unauthorized, requests.codes.forbidden}

    def run_url(self, dag_id: str, run_id: str) -> str:
        """Where the run opens in the Airflow UI of the server's version.

        Args:
            dag_id: the DAG.
            run_id: the run.

        Returns:
            An absolute URL.
        """
        dag = quote(dag_id, safe="")
        if self.api_version == "v2":
            return f"{self.base_url}/dags/{dag}/runs/{quote(run_id, safe=RUN_ID_SAFE)}"
        return f"{self.base_url}/dags/{dag}/grid?{urlencode({'dag_run_id': run_id})}"

    def get_run(self, dag_id: str, run_id: str) -> DagRun | None:
        """Read a run's current state (completion tracking), retrying transient failures.

        Args:
            dag_id: the DAG.
            run_id: the run.

        Returns:
            The run, or None when Airflow knows no such run (or DAG).

        Raises:
            AirflowUnavailableError: the retry budget ran out.
            AirflowError: Airflow refused the request (code ``airflow_rejected``).
            ConfigError: credentials refused or TLS failure.
        """
        _check_ids(dag_id, run_id)
        run, _ = self._fetch_run(self.retry.start(), dag_id, run_id)
        return run

    def ended_runs(self, dag_ids: Collection[str], since: datetime) -> EndedRuns | None:
        """Runs of ``dag_ids`` that ended (success or failed) at or after ``since``.

        One list call per page of ``LIST_PAGE`` runs (``POST /dags/~/dagRuns/list``, on
        both API versions), however many runs are tracked: completion tracking at scale.

        Args:
            dag_ids: the DAGs of the tracked runs.
            since: a timezone-aware instant; runs that ended before it are left out.

        Returns:
            The ended runs and the latest end among them (Airflow's clock), or None when
            this Airflow has no list endpoint (404, 405).

        Raises:
            AirflowUnavailableError: the retry budget ran out.
            AirflowError: Airflow refused the request (code ``airflow_rejected``).
            ConfigError: credentials refused or TLS failure.
        """
        body: dict[str, Any] = {
            "dag_ids": sorted(dag_ids),
            "states": sorted(ENDED_STATES),
            "end_date_gte": since.astimezone(UTC).isoformat(),
            "order_by": "id",
            "page_limit": LIST_PAGE,
        }
        runs: list[DagRun] = []
        ends: list[datetime] = []
        state = self.retry.start()
        while True:
            body["page_offset"] = len(runs)
            response, state = self.transport.request(state, "POST", LIST_PATH, body=body)
            if response.status_code in UNLISTABLE:
                return None
            if not response.ok:
                raise self.refusal(response, state)
            page = read_json(response)
            found = page.get("dag_runs") if isinstance(page, dict) else None
            if not isinstance(found, list):
                raise AirflowError(ErrorCode.AIRFLOW_REJECTED, "Airflow listed no DAG runs")
            runs += [self.parse_run(_dag_id_of(item), item) for item in found]
            ends += filter(None, (parse_timestamp(item.get("end_date")) for item in found))
            if len(found) < LIST_PAGE or len(runs) >= int(page.get("total_entries") or 0):
                return EndedRuns(runs, max(ends, default=None))

    def trigger(
        self,
        dag_id: str,
        run_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | None = None,
        note: str | None = None,
    ) -> TriggerResult:
        """Create a DAG run, or find the one this run id already names (spec §3 Idempotency).

        Args:
            dag_id: the DAG.
            run_id: the deterministic run id (checked against Airflow's rules before sending).
            conf: the run's conf.
            logical_date: an aware logical date, or None for none (Airflow 3) / now (Airflow 2).
            note: the run's note.

        Returns:
            The run with ``created`` True when this call made it, False for a duplicate.

        Raises:
            AirflowError: ``dag_not_found`` (404), ``airflow_rejected`` (400/422 and other
                refusals, or a run id Airflow would refuse), ``logical_date_conflict``
                (another run holds ``logical_date``).
            AirflowUnavailableError: ``airflow_unavailable``: the retry budget ran out.
            ConfigError: credentials refused after a token refresh, or TLS failure.
        """
        _check_ids(dag_id, run_id)
        when = _utc(logical_date)
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns"
        state = self.retry.start()
        while True:
            body = self._payload(run_id, conf, when, note)
            response, state = self.transport.request(state, "POST", path, body=body)
            if response.ok:
                run = self.parse_run(dag_id, read_json(response))
                return self._result(run, created=True, state=state)
            if response.status_code != requests.codes.conflict:
                raise self.refusal(response, state)
            existing, state = self._fetch_run(state, dag_id, run_id)
            if existing is not None:
                return self._result(existing, created=False, state=state)
            if when is not None:
                raise AirflowError(
                    ErrorCode.LOGICAL_DATE_CONFLICT,
                    f"another run of {dag_id} already holds logical date {when.isoformat()}",
                    {"logical_date": when.isoformat(), "attempts": state.attempts},
                )
            # Airflow 2 stamped "now" and met a run at the same instant: a fresh POST is safe
            state = self.transport.backoff(state.retry_last(), "POST", path)

    # -- internals --------------------------------------------------------------------------
    def _payload(
        self,
        run_id: str,
        conf: Mapping[str, Any] | None,
        when: datetime | None,
        note: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"dag_run_id": run_id, "conf": dict(conf or {})}
        # facts §7.2: Airflow 3 requires the key (null allowed); Airflow 2 rejects null
        if when is not None or self.api_version == "v2":
            body["logical_date"] = when.isoformat() if when is not None else None
        if note is not None:
            body["note"] = note
        return body

    def _result(self, run: DagRun, *, created: bool, state: RetryState) -> TriggerResult:
        return TriggerResult(
            dag_id=run.dag_id,
            dag_run_id=run.dag_run_id,
            state=run.state,
            logical_date=run.logical_date,
            run_url=run.run_url,
            source=run.source,
            created=created,
            dag_paused=self._dag_paused(run.dag_id),
            attempts=state.attempts,
            may_have_reached=state.may_have_reached,  # only POSTs: a failed GET made nothing
        )

    def parse_run(self, dag_id: str, body: Any) -> DagRun:
        """Read Airflow's JSON of a run (``AirflowError`` when it is not one)."""
        if not isinstance(body, dict) or not isinstance(body.get("dag_run_id"), str):
            raise AirflowError(ErrorCode.AIRFLOW_REJECTED, "Airflow answered without a DAG run")
        run_id: str = body["dag_run_id"]
        return DagRun(
            dag_id=str(body.get("dag_id") or dag_id),
            dag_run_id=run_id,
            state=str(body.get("state") or "unknown"),
            logical_date=parse_timestamp(body.get("logical_date")),
            run_url=self.run_url(dag_id, run_id),
            source=source_of(body.get("conf")),
        )

    def _fetch_run(
        self, state: RetryState, dag_id: str, run_id: str
    ) -> tuple[DagRun | None, RetryState]:
        response, state = self.transport.request(state, "GET", run_path(dag_id, run_id))
        if response.status_code == requests.codes.not_found:
            return None, state
        if not response.ok:
            raise self.refusal(response, state)
        return self.parse_run(dag_id, read_json(response)), state

    def _dag_paused(self, dag_id: str) -> bool | None:
        """Whether the DAG is paused (facts §7.8: the trigger answer does not say); best effort."""
        cached = self._paused.get(dag_id)
        if cached is not None and time.monotonic() - cached[1] < self._dag_info_ttl:
            return cached[0]
        response = self.transport.get_once(f"/dags/{quote(dag_id, safe='')}")
        body = read_json(response) if response is not None and response.ok else None
        paused = body.get("is_paused") if isinstance(body, dict) else None
        if not isinstance(paused, bool):
            return None
        self._paused[dag_id] = (paused, time.monotonic())
        return paused

    def refusal(self, response: requests.Response, state: RetryState) -> Exception:
        """The exception for a non-transient, non-success answer."""
        status = response.status_code
        detail = _detail(response)
        if status in {requests.codes.unauthorized, requests.codes.forbidden}:
            return ConfigError(
                f"Airflow at {self.base_url} refused the credentials ({status}: {detail}); "
                "check the username/password or token and its permission to trigger DAG runs"
            )
        code = ErrorCode.DAG_NOT_FOUND if status == requests.codes.not_found else None
        return AirflowError(
            code or ErrorCode.AIRFLOW_REJECTED,
            f"Airflow answered {status}: {detail}",
            {"status": status, "detail": detail, "attempts": state.attempts},
        )


def _dag_id_of(item: Any) -> str:
    return str(item.get("dag_id") or "") if isinstance(item, dict) else ""


def _detail(response: requests.Response) -> str:
    """Airflow's own words (``detail``, else ``title``), bounded; never the raw HTML page."""
    body = read_json(response)
    detail: Any = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
    text = str(detail) if detail is not None else (response.reason or "no detail")
    return text[:DETAIL_LIMIT]


def _check_ids(dag_id: str, run_id: str) -> None:
    """Refuse ids Airflow would refuse (or, on Airflow 2, answer with a 500 page) before sending.

    Raises:
        AirflowError: ``airflow_rejected`` with ``details.reason``.
    """
    if not DAG_ID_PATTERN.fullmatch(dag_id) or set(dag_id) == {"."}:
        raise AirflowError(
            ErrorCode.AIRFLOW_REJECTED,
            f"dag_id {dag_id[:100]!r} is not a valid Airflow dag_id",
            {"reason": "invalid_dag_id", "attempts": 0},
        )
    if (
        not RUN_ID_PATTERN.fullmatch(run_id)
        or set(run_id) == {"."}
        or run_id.startswith(RESERVED_RUN_ID_PREFIXES)
    ):
        raise AirflowError(
            ErrorCode.AIRFLOW_REJECTED,
            f"run id {run_id[:100]!r} would be refused by Airflow: it must match "
            f"{RUN_ID_PATTERN.pattern} and not start with {', '.join(RESERVED_RUN_ID_PREFIXES)}",
            {"reason": "invalid_run_id", "attempts": 0},
        )


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        raise AirflowError(
            ErrorCode.AIRFLOW_REJECTED,
            "logical_date must carry a time zone",
            {"reason": "naive_logical_date", "attempts": 0},
        )
    return when.astimezone(UTC)
