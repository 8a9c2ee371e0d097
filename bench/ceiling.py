"""The API ceiling: concurrent trigger POSTs straight to Airflow, no Kafka (notes §6's method).

Each client is a thread with its own session in a closed loop: POST, wait for the answer,
POST again, until the point's request quota or time is used up.
"""

from __future__ import annotations

import itertools
import threading
import time

import requests

from bench.result import Result, describe
from bench.rig import PAUSED_DAG, Rig
from devstack.airflow import AirflowServer

DEFAULT_SWEEP = (1, 2, 4, 8, 16, 32)
POST_TIMEOUT = 30.0  # Airflow 3's pool timeout is 30 s: past it the server answers 500 anyway


def trigger_body(server: AirflowServer, run_id: str) -> dict[str, object]:
    """The smallest valid trigger body of the server's API version."""
    body: dict[str, object] = {"dag_run_id": run_id, "conf": {}}
    if server.major == "3":
        body["logical_date"] = None  # required on v2; null means "no logical date"
    return body


def post_trigger(session: requests.Session, url: str, body: dict[str, object]) -> bool:
    """POST one trigger; whether Airflow answered 200 (a failure or no answer is False)."""
    try:
        return session.post(url, json=body, timeout=POST_TIMEOUT).status_code == 200
    except requests.RequestException:
        return False


def measure_point(rig: Rig, clients: int, quota: int, seconds: float) -> Result:
    """``clients`` concurrent POST loops sharing ``quota`` requests within ``seconds``."""
    url = f"{rig.airflow.url}/api/{rig.airflow.api_version}/dags/{PAUSED_DAG}/dagRuns"
    numbers = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    sessions = [rig.airflow.session() for _ in range(clients)]
    began = time.monotonic()
    deadline = began + seconds

    def loop(session: requests.Session) -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(numbers)
            if i >= quota:
                return
            body = trigger_body(rig.airflow, f"{rig.run_tag}-c{clients}-{i:06d}")
            start = time.monotonic()
            ok = post_trigger(session, url, body)
            with lock:
                if ok:
                    latencies.append(time.monotonic() - start)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + POST_TIMEOUT + 10)
    elapsed = time.monotonic() - began
    for session in sessions:
        session.close()
    return Result(
        name=f"ceiling, {clients} client{'s' if clients > 1 else ''}",
        family="ceiling",
        n=len(latencies) + failures[0],
        done=len(latencies),
        seconds=elapsed,
        latencies=latencies,
        airflow_calls=len(latencies) + failures[0],
        errors=failures[0],
        concurrency=clients,
    )


def settle(rig: Rig, timeout: float = 600.0) -> None:
    """Delete the benchmark's runs, then wait (bounded) until a login and a GET answer fast.

    Each contender so meets an Airflow without the runs of the earlier ones. A collapsed
    point leaves a queue behind: Airflow 3 works through every request it had accepted,
    each waiting up to its 30 s pool timeout, and accepts nothing new meanwhile.
    """
    rig.forget_runs()
    url = f"{rig.airflow.url}/api/{rig.airflow.api_version}/dags/{PAUSED_DAG}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        start, answered = time.monotonic(), False
        try:
            with rig.airflow.session() as session:
                answered = session.get(url, timeout=10).status_code == 200
            if answered and time.monotonic() - start < 1.0:  # token and GET, both quick
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    print(f"  Airflow still slow after {timeout:.0f} s; going on", flush=True)


def sweep(rig: Rig, quota: int, seconds: float, clients: tuple[int, ...]) -> list[Result]:
    """One point per client count, each followed by a settle; prints as it goes."""
    results = []
    for count in clients:
        result = measure_point(rig, count, quota, seconds)
        print(f"  {result.name}: {describe(result)}", flush=True)
        results.append(result)
        settle(rig)
    return results
