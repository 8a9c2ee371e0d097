"""Ending DAG runs from outside: a PATCH to ``success`` per run, from a pool of threads.

``bench.tracked`` ends each run of the paused DAG this way as soon as the run exists, so
no run executes and the moment the PATCH returned is the run's end::

    PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}  {"state": "success"}   (Airflow 2: /api/v1)
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import requests

from devstack.airflow import AirflowServer

DEFAULT_THREADS = 8  # enough to end runs as fast as the worker makes them
PATCH_TIMEOUT = 30.0
PATCH_TRIES = 3  # a 5xx or no answer is tried again after a second; a 4xx is final
RUN_ID_SAFE = ":+~"


class RunEnder:
    """Ends runs of one DAG with a PATCH to ``success``; one session per thread.

    Attributes:
        ended_ms: when each run's PATCH answered 200 (epoch ms), by the caller's key.
        failures: runs whose every try failed: never ended.
    """

    def __init__(self, server: AirflowServer, dag_id: str, threads: int = DEFAULT_THREADS):
        """Prepare the pool; nothing is sent before ``submit``."""
        self.base = f"{server.url}/api/{server.api_version}/dags/{quote(dag_id, safe='')}/dagRuns"
        self.server = server
        self.ended_ms: dict[str, int] = {}
        self.failures = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="end-run")

    def submit(self, key: str, run_id: str) -> None:
        """End ``run_id`` as soon as a thread is free; its end is recorded under ``key``."""
        with self._lock:
            self._pending += 1
        self._pool.submit(self._end, key, run_id)

    def state(self) -> tuple[int, int]:
        """How many runs have ended, and how many PATCHes are still to answer."""
        with self._lock:
            return len(self.ended_ms), self._pending

    def close(self) -> None:
        """Drop the PATCHes not yet started; those under way finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.server.session()
        return session

    def _end(self, key: str, run_id: str) -> None:
        url = f"{self.base}/{quote(run_id, safe=RUN_ID_SAFE)}"
        ended = None
        for _ in range(PATCH_TRIES):
            try:
                answer = self._session().patch(
                    url, json={"state": "success"}, timeout=PATCH_TIMEOUT
                )
            except requests.RequestException:
                time.sleep(1)
                continue
            if answer.status_code == requests.codes.ok:
                ended = round(time.time() * 1000)
                break
            if answer.status_code < requests.codes.internal_server_error:
                break  # refused for good (404, 400): no retry helps
            time.sleep(1)
        with self._lock:
            self._pending -= 1
            if ended is None:
                self.failures += 1
            else:
                self.ended_ms[key] = ended
