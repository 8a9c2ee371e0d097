"""The threads of a flood (``bench.flood``): steady load, replies, the drain, the samples.

- ``Steady``: the other DAG's open-loop load, its keys named by phase (baseline, flood).
- ``FloodReplies``: reads the reply topic; each flood run named by a ``triggered`` reply
  waits in ``to_end`` for the drain.
- ``Drain``: plays Airflow's scheduler, ending queued flood runs at a fixed pace.
- ``Sampler``: every 0.5 s, Airflow's queued count for the flooded DAG, the workers'
  deferred gauge and the store's size.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import requests
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench import metrics_probe
from bench.rig import PAUSED_DAG, Rig, request_value
from bench.run_end import RunEnder

FLOOD_DAG = "devstack_limited"  # paused, and left without runs: its queued count is the flood's
OTHER_DAG = PAUSED_DAG  # the DAG the other contenders time
STEADY_RATE = 5.0  # the other DAG's requests per second
SAMPLE_SECONDS = 0.5
DEFERRED_GAUGE = "trigger_consumer_deferred"
Sample = tuple[float, int | None, float | None, int | None]  # s, queued, deferred, store bytes


class FloodReplies(threading.Thread):
    """Reads the reply topic: steady replies are timed, flood runs go to the drain queue."""

    def __init__(self, rig: Rig, topic: str, flood_prefix: str) -> None:
        """Read ``topic``; keys starting with ``flood_prefix`` are the flood's."""
        super().__init__(daemon=True, name="flood-replies")
        self.consumer = KafkaConsumer(bootstrap_servers=rig.bootstrap, enable_auto_commit=False)
        self.topic = topic
        self.flood_prefix = flood_prefix
        self.first_ms: dict[str, int] = {}  # every key's first reply (Kafka timestamp)
        self.triggered: Counter[str] = Counter()
        self.refused: dict[str, str] = {}
        self.to_end: queue.Queue[tuple[str, str]] = queue.Queue()
        self.lock = threading.Lock()
        self.last_flood_reply = time.monotonic()
        self.ready = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        """Assign every partition from the beginning, then read until halted."""
        try:
            partitions = None
            while not partitions and not self.halt.is_set():
                partitions = self.consumer.partitions_for_topic(self.topic)
                time.sleep(0 if partitions else 0.2)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions or ())]
            self.consumer.assign(assigned)
            self.consumer.seek_to_beginning(*assigned)
            self.ready.set()
            while not self.halt.is_set():
                for records in self.consumer.poll(timeout_ms=200).values():
                    for record in records:
                        self._take(record)
        finally:
            self.ready.set()
            self.consumer.close()

    def _take(self, record: Any) -> None:
        key = record.key.decode() if record.key else ""
        try:
            reply = json.loads(record.value)
        except ValueError:
            reply = {}
        status = reply.get("status") if isinstance(reply, dict) else None
        with self.lock:
            self.first_ms.setdefault(key, record.timestamp)
            if not key.startswith(self.flood_prefix):
                return
            self.last_flood_reply = time.monotonic()
            if status == "triggered":
                self.triggered[key] += 1
                if self.triggered[key] == 1:
                    self.to_end.put((key, reply["dag_run_id"]))
            else:
                self.refused.setdefault(key, str(status))

    def flood_answered(self) -> int:
        """Flood keys with a reply so far."""
        with self.lock:
            return len(self.triggered.keys() | self.refused.keys())


class Drain(threading.Thread):
    """Ends the flood's runs in reply order, ``rate`` per second at most: the scheduler."""

    def __init__(self, replies: FloodReplies, ender: RunEnder, rate: float) -> None:
        """End the runs ``replies`` names through ``ender``, ``rate`` per second."""
        super().__init__(daemon=True, name="flood-drain")
        self.replies, self.ender, self.interval = replies, ender, 1 / rate
        self.halt = threading.Event()

    def run(self) -> None:
        """Hand one run to the ender each interval, while any waits."""
        while not self.halt.wait(self.interval):
            try:
                key, run_id = self.replies.to_end.get_nowait()
            except queue.Empty:
                continue  # nothing queued now: the pace is a ceiling, no credit is saved
            self.ender.submit(key, run_id)


class Steady(threading.Thread):
    """Open loop: one request for the other DAG due every 1/rate s until halted.

    Keys are named by ``phase`` when due (``<tag>-steady-<phase>-<i>``), so the warm-up,
    the baseline and the flood are told apart.
    """

    def __init__(self, rig: Rig, topic: str, tag: str) -> None:
        """Produce to ``topic``, keys ``<tag>-steady-<phase>-<i>``."""
        super().__init__(daemon=True, name="flood-steady")
        self.bootstrap = rig.bootstrap
        self.topic, self.tag = topic, tag
        self.phase = "warmup"
        self.due_ms: dict[str, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        """Produce until halted, each request at its due time (or at once when late)."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        start, i = time.time() + 0.2, 0
        try:
            while not self.halt.is_set():
                at = start + i / STEADY_RATE
                if self.halt.wait(max(0.0, at - time.time())):
                    break
                key = f"{self.tag}-steady-{self.phase}-{i:06d}"
                producer.send(self.topic, key=key.encode(), value=request_value(key, OTHER_DAG))
                self.due_ms[key] = round(at * 1000)
                i += 1
        finally:
            producer.close()

    def latencies(self, phase: str, first_ms: dict[str, int]) -> tuple[list[float], int]:
        """The phase's latencies (due → reply) and how many of its requests got none."""
        keys = [k for k in self.due_ms if k.startswith(f"{self.tag}-steady-{phase}-")]
        answered = [k for k in keys if k in first_ms]
        return [(first_ms[k] - self.due_ms[k]) / 1000 for k in answered], len(keys) - len(answered)


class Sampler(threading.Thread):
    """Every 0.5 s: Airflow's queued count for the flooded DAG, deferred rows, store bytes."""

    def __init__(self, rig: Rig, ports: list[int], store: Path | str) -> None:
        """Sample the workers on ``ports`` and ``store`` (SQLite file or PostgreSQL URL)."""
        super().__init__(daemon=True, name="flood-sampler")
        self.session = rig.airflow.session()
        self.url = f"{rig.airflow.url}/api/{rig.airflow.api_version}/dags/{FLOOD_DAG}/dagRuns"
        self.ports, self.store = ports, store
        self.samples: list[Sample] = []
        self.began = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        """Sample until halted."""
        try:
            while not self.halt.wait(SAMPLE_SECONDS):
                self.samples.append(
                    (time.monotonic() - self.began, self._queued(), self._deferred(), self._size())
                )
        finally:
            self.session.close()

    def _queued(self) -> int | None:
        try:
            answer = self.session.get(
                self.url, params={"state": "queued", "limit": "1"}, timeout=10
            )
            total = answer.json().get("total_entries") if answer.ok else None
        except (requests.RequestException, ValueError):
            return None
        return total if isinstance(total, int) else None

    def _deferred(self) -> float | None:
        # every replica reports the store's count: the largest is the freshest
        found = []
        for port in self.ports:
            try:
                found.append(metrics_probe.scrape(port).get(DEFERRED_GAUGE, 0.0))
            except requests.RequestException:
                continue
        return max(found) if found else None

    def _size(self) -> int | None:
        if isinstance(self.store, Path):  # SQLite: the file and its write-ahead log
            files = (self.store, self.store.with_name(self.store.name + "-wal"))
            return sum(f.stat().st_size for f in files if f.exists())
        try:
            with psycopg.connect(self.store, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT pg_total_relation_size(to_regclass('trigger_consumer_deferred'))"
                ).fetchone()
        except psycopg.Error:
            return None
        return int(row[0]) if row and row[0] is not None else None
