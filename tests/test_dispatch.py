"""Tests of consumer/dispatch.py: per-key order, bounds, failures, context and shutdown."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from structlog.testing import capture_logs

from consumer.dispatch import CALLBACK_FAILED, Dispatcher
from consumer.errors import DispatcherClosedError
from tests.waiting import wait_until

TIMEOUT = 10.0
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


class Concurrency:
    """Counts tasks running at once, the highest count seen, and the threads that ran them."""

    def __init__(self) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.threads: set[threading.Thread] = set()

    def enter(self) -> int:
        """Note a task starting; return how many run now, itself included."""
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
            self.threads.add(threading.current_thread())
            return self.current

    def leave(self) -> None:
        """Note a task ending."""
        with self._lock:
            self.current -= 1


@pytest.fixture
def make_dispatcher() -> Iterator[Callable[[int], Dispatcher]]:
    """A factory of dispatchers that are all shut down after the test."""
    made: list[Dispatcher] = []

    def make(max_in_flight: int) -> Dispatcher:
        dispatcher = Dispatcher(max_in_flight)
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        assert dispatcher.shutdown(TIMEOUT)


def blocked_until(
    gate: threading.Event, counter: Concurrency, done: Callable[[], object] = lambda: None
) -> Callable[[], None]:
    """A task that waits for ``gate`` (counted in ``counter``), then calls ``done``."""

    def task() -> None:
        counter.enter()
        try:
            assert gate.wait(TIMEOUT)
        finally:
            counter.leave()
        done()

    return task


def drained(dispatcher: Dispatcher) -> None:
    """Wait until every accepted task of ``dispatcher`` finished."""
    wait_until(lambda: dispatcher.in_flight() == 0, timeout=TIMEOUT, what="drained")


def test_tasks_sharing_a_key_run_in_submission_order_one_at_a_time(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """Fifty keys of twenty tasks each run per key in order, never two of a key at once."""
    dispatcher = make_dispatcher(8)
    keys, per_key = 50, 20
    ran: dict[str, list[int]] = {f"key-{k}": [] for k in range(keys)}
    per_key_running = {key: Concurrency() for key in ran}

    def task(key: str, index: int) -> Callable[[], None]:
        def run() -> None:
            assert per_key_running[key].enter() == 1
            ran[key].append(index)
            per_key_running[key].leave()

        return run

    for index in range(per_key):
        for key in ran:
            dispatcher.submit(key, task(key, index))

    drained(dispatcher)
    assert all(seen == list(range(per_key)) for seen in ran.values())
    assert all(counter.peak == 1 for counter in per_key_running.values())


def test_parallelism_never_exceeds_max_in_flight(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """Eight blocked tasks on distinct keys run exactly four at a time on four threads."""
    dispatcher = make_dispatcher(4)
    gate = threading.Event()
    counter = Concurrency()

    for n in range(8):
        dispatcher.submit(f"key-{n}", blocked_until(gate, counter))

    wait_until(lambda: counter.current == 4, timeout=TIMEOUT, what="four running")
    assert dispatcher.in_flight() == 8
    gate.set()
    drained(dispatcher)
    assert counter.peak == 4
    assert len(counter.threads) == 4


def test_raising_task_is_logged_and_the_next_task_of_its_key_still_runs(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """Each raising task is logged as dispatch_callback_failed; the single thread goes on."""
    dispatcher = make_dispatcher(1)
    survived: list[int] = []

    def fail() -> None:
        raise LookupError("boom")

    with capture_logs() as logs:
        for _ in range(3):
            dispatcher.submit("k", fail)
        dispatcher.submit("k", lambda: survived.append(42))
        drained(dispatcher)

    assert survived == [42]
    assert [entry["event"] for entry in logs] == [CALLBACK_FAILED] * 3
    assert {entry["log_level"] for entry in logs} == {"error"}


def test_submit_never_waits_however_many_tasks_are_queued(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """With one thread blocked, ten more submits return at once and all run once it frees.

    The worker loop calls ``submit`` and must never block on it (a fanned-out event is
    several tasks per fetched record).
    """
    dispatcher = make_dispatcher(1)
    gate = threading.Event()
    counter = Concurrency()
    ran: list[int] = []
    dispatcher.submit("first", blocked_until(gate, counter))
    wait_until(lambda: counter.current == 1, timeout=TIMEOUT, what="the first task running")
    submitter = threading.Thread(
        target=lambda: [dispatcher.submit(f"k{n}", partial(ran.append, n)) for n in range(10)]
    )

    submitter.start()
    submitter.join(timeout=TIMEOUT)

    assert not submitter.is_alive()
    assert dispatcher.in_flight() == 11
    gate.set()
    drained(dispatcher)
    assert sorted(ran) == list(range(10))


def test_constructor_rejects_no_threads() -> None:
    """A dispatcher without threads is refused."""
    with pytest.raises(ValueError, match="max_in_flight"):
        Dispatcher(0)


def test_shutdown_drains_queued_and_running_tasks_then_stops_the_threads(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """Shutting down refuses new tasks, waits for running and queued ones, then ends the threads."""
    dispatcher = make_dispatcher(6)
    gate = threading.Event()
    counter = Concurrency()
    ran: list[int] = []
    for n in range(12):  # the whole backlog, on three keys
        dispatcher.submit(f"key-{n % 3}", blocked_until(gate, counter, partial(ran.append, n)))
    outcome: list[bool] = []
    stopper = threading.Thread(target=lambda: outcome.append(dispatcher.shutdown(TIMEOUT)))

    stopper.start()
    with pytest.raises(DispatcherClosedError):
        dispatcher.submit("late", lambda: None)  # waits for room until shutdown begins
    gate.set()
    stopper.join(timeout=TIMEOUT)

    assert outcome == [True]
    assert sorted(ran) == list(range(12))
    assert dispatcher.in_flight() == 0
    assert not any(thread.is_alive() for thread in counter.threads)


def test_shutdown_times_out_on_a_blocked_task_and_drops_queued_ones(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """A shutdown that times out returns False, drops queued tasks, and lets running ones end."""
    dispatcher = make_dispatcher(2)
    gate = threading.Event()
    counter = Concurrency()
    ran: list[str] = []
    dispatcher.submit("k", blocked_until(gate, counter, lambda: ran.append("stuck")))
    dispatcher.submit("k", lambda: ran.append("queued"))
    wait_until(lambda: counter.current == 1, timeout=TIMEOUT, what="stuck task running")

    assert dispatcher.shutdown(0.1) is False

    assert dispatcher.in_flight() == 1
    gate.set()
    drained(dispatcher)
    wait_until(lambda: not any(t.is_alive() for t in counter.threads), timeout=TIMEOUT, what="exit")
    assert ran == ["stuck"]


def test_task_sees_the_submitters_context_vars(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """Context variables set around submit (structlog's bound context) are visible in the task."""
    dispatcher = make_dispatcher(2)
    seen: list[str] = []

    for request_id in ("req-1", "req-2"):
        token = REQUEST_ID.set(request_id)
        try:
            dispatcher.submit(request_id, lambda: seen.append(REQUEST_ID.get()))
        finally:
            REQUEST_ID.reset(token)

    drained(dispatcher)
    assert sorted(seen) == ["req-1", "req-2"]
    assert REQUEST_ID.get() == "unset"


def test_busy_while_a_task_of_the_key_is_queued_or_running(
    make_dispatcher: Callable[[int], Dispatcher],
) -> None:
    """busy(key) holds from submit until the key's last task finished, and only for that key."""
    dispatcher = make_dispatcher(1)
    gate = threading.Event()
    counter = Concurrency()
    assert not dispatcher.busy("a")
    dispatcher.submit("a", blocked_until(gate, counter))
    dispatcher.submit("b", blocked_until(gate, counter))  # queued: the one thread is taken
    assert dispatcher.busy("a") and dispatcher.busy("b")
    assert not dispatcher.busy("c")
    gate.set()
    wait_until(lambda: not dispatcher.busy("a") and not dispatcher.busy("b"), timeout=TIMEOUT)
