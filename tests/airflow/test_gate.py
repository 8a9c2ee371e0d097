"""Tests of consumer/airflow/gate.py: the hold, judged from the worker's own triggers (pure)."""

from __future__ import annotations

import threading
import time

from consumer.airflow.gate import AirflowGate
from tests.waiting import wait_until


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


def test_a_definite_refusal_lifts_the_hold_without_counting_as_a_success() -> None:
    """record_served opens the gate, but no other request's spent budget fails because of it."""
    gate = AirflowGate(threading.Event())
    before = time.monotonic()
    gate.hold("503 Service Unavailable")

    gate.record_served()

    assert gate.available
    assert gate.reason is None
    assert not gate.others_succeeded_since(before)


def test_a_hold_probes_by_itself_until_the_endpoint_answers() -> None:
    """With no held request left to prove it, the gate's own probe lifts the hold."""
    answers = iter([False, False, True])
    calls: list[bool] = []

    def probe() -> bool:
        calls.append(answer := next(answers))
        return answer

    gate = AirflowGate(threading.Event(), probe=probe, probe_interval=0.01)
    gate.hold("timeout")

    wait_until(lambda: gate.available, timeout=10, what="the probe to lift the hold")
    assert calls == [False, False, True]


def test_a_stopped_worker_stops_probing() -> None:
    """Once the worker stops, the probe is no longer called and the hold stays."""
    stop = threading.Event()
    calls: list[int] = []
    gate = AirflowGate(stop, probe=lambda: bool(calls.append(1)), probe_interval=0.01)
    gate.hold("timeout")
    wait_until(lambda: len(calls) >= 2, timeout=10, what="the probe running")

    stop.set()
    seen = len(calls)
    wait_until(lambda: gate._probing.acquire(blocking=False), timeout=10, what="probe ended")

    assert len(calls) <= seen + 1
    assert not gate.available


def test_each_hold_a_probe_ended_without_a_run_waits_longer_for_its_probe() -> None:
    """A read-only Airflow database: probes answer, runs fail; probing slows, a run resets it.

    The probe's 404 comes after a database read, so it cannot tell that runs cannot be
    written; without the back-off such an outage lifted the hold every probe interval.
    """
    gate = AirflowGate(threading.Event(), probe=lambda: True, probe_interval=0.01)
    delays = []
    for _ in range(3):
        gate.hold("500 Internal Server Error")
        wait_until(lambda: gate.available, timeout=10, what="the probe to lift the hold")
        delays.append(gate.probe_delay)
    assert delays == [0.02, 0.04, 0.08]
    gate.record_success()
    assert gate.probe_delay == 0.01


def test_a_probe_thread_whose_hold_ended_frees_its_place_at_once() -> None:
    """A long probe delay: the hold lifts, a new hold begins; its probe does not wait it out.

    The probe thread slept its whole delay (up to five minutes) after its hold ended, and a
    hold begun meanwhile got no probe of its own until then (second adversarial review).
    """
    probes: list[int] = []
    gate = AirflowGate(threading.Event(), probe=lambda: bool(probes.append(1)), probe_interval=0.01)
    gate.probe_delay = 600.0
    gate.hold("timeout")
    gate.record_success()  # a real run: the delay is back to 0.01, the old thread leaves
    gate.hold("timeout again")
    wait_until(lambda: len(probes) >= 1, timeout=10, what="the new hold's probe")
