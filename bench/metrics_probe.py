"""Reads the worker's own Prometheus endpoint: dedup hits, retries, the concurrency limit."""

from __future__ import annotations

import threading

import requests

DEDUP_HITS = "trigger_consumer_dedup_hits_total"
RETRIES = "trigger_consumer_airflow_retries_total"
LIMIT = "trigger_consumer_concurrency_limit"


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


class LimitSampler(threading.Thread):
    """Samples the concurrency limit twice a second until stopped: the adaptive point."""

    def __init__(self, port: int) -> None:
        """Sample the worker listening on ``port``."""
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        """Sample until ``halt`` is set."""
        while not self.halt.wait(0.5):
            try:
                self.samples.append(scrape(self.port).get(LIMIT, 0.0))
            except requests.RequestException:
                continue

    def mean(self) -> float | None:
        """The mean limit over the run; None without samples."""
        return sum(self.samples) / len(self.samples) if self.samples else None
