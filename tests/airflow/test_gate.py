"""Tests of consumer/airflow/gate.py: the hold, judged from the worker's own triggers (pure)."""

from __future__ import annotations

import threading
import time

from consumer.airflow.gate import AirflowGate


def test_a_held_request_makes_the_gate_unavailable_with_its_reason() -> None:
    """hold() closes the gate and names why; a success anywhere opens it and clears the reason."""
    gate = AirflowGate(threading.Event())
    assert gate.available

    gate.hold("503 Service Unavailable")

    assert not gate.available
    assert gate.reason == "no DAG run could be created: 503 Service Unavailable"
    gate.record_success()
    assert gate.available
    assert gate.reason is None


def test_others_succeeded_since_compares_with_the_last_success() -> None:
    """Only a success at or after the asked instant counts as Airflow making runs for others."""
    gate = AirflowGate(threading.Event())
    before = time.monotonic()
    assert not gate.others_succeeded_since(before)

    gate.record_success()

    assert gate.others_succeeded_since(before)
    assert not gate.others_succeeded_since(time.monotonic() + 1)


def test_a_held_wait_ends_early_when_another_trigger_succeeds() -> None:
    """wait_to_retry returns as soon as another request's trigger succeeds, not at its delay."""
    gate = AirflowGate(threading.Event())
    gate.hold("timeout")
    threading.Timer(0.2, gate.record_success).start()

    began = time.monotonic()
    assert gate.wait_to_retry(30.0) is True
    assert time.monotonic() - began < 10


def test_a_held_wait_gives_up_when_the_worker_stops() -> None:
    """A stop during the wait returns False: the request is abandoned, not failed."""
    stop = threading.Event()
    gate = AirflowGate(stop)
    gate.hold("timeout")
    threading.Timer(0.2, stop.set).start()

    assert gate.wait_to_retry(30.0) is False
