"""Reads the worker's own Prometheus endpoint: dedup hits, retries, limit, Airflow calls."""

from __future__ import annotations

import threading
import time

import requests

DEDUP_HITS = "trigger_consumer_dedup_hits_total"
RETRIES = "trigger_consumer_airflow_retries_total"
LIMIT = "trigger_consumer_concurrency_limit"
AIRFLOW_CALLS = "trigger_consumer_airflow_calls_total"


def scrape(port: int) -> dict[str, float]:
    """Every sample of ``/metrics``, summed over labels, by metric name."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def airflow_calls(port: int) -> dict[str, float]:
    """The worker's HTTP requests to Airflow so far, by purpose (``trigger``, ``tracking``...)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    calls: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(AIRFLOW_CALLS + '{purpose="'):
            name_labels, _, value = line.rpartition(" ")
            calls[name_labels.split('"')[1]] = float(value)
    return calls


class LimitSampler(threading.Thread):
    """Samples the concurrency limit twice a second until stopped: the adaptive point.

    With several replicas, one sample is the sum of their limits (the group's concurrency).
    ``times`` holds each sample's seconds since ``start``: the knee plot's x axis.
    """

    def __init__(self, ports: list[int]) -> None:
        """Sample the workers listening on ``ports``."""
        super().__init__(daemon=True)
        self.ports = ports
        self.samples: list[float] = []
        self.times: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        """Sample until ``halt`` is set."""
        began = time.monotonic()
        while not self.halt.wait(0.5):
            try:
                total = sum(scrape(port).get(LIMIT, 0.0) for port in self.ports)
            except requests.RequestException:
                continue
            self.samples.append(total)
            self.times.append(time.monotonic() - began)

    def mean(self) -> float | None:
        """The mean limit over the run; None without samples."""
        return sum(self.samples) / len(self.samples) if self.samples else None
