"""Tests of consumer/dispatch.py: per-key order, bounds, failures, limits and shutdown."""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from typing import Any

import pytest
from structlog.testing import capture_logs

from consumer.dispatch import CALLBACK_FAILED, Dispatcher, DispatcherClosedError
from tests.waiting import wait_until

TIMEOUT = 10.0
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


class Concurrency:
    """Counts tasks running at once and remembers the highest count seen."""

    def __init__(self) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def enter(self) -> int:
        """Note a task starting; return how many run now, itself included."""
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
            return self.current

    def leave(self) -> None:
        """Note a task ending."""
        with self._lock:
            self.current -= 1


@pytest.fixture
def make_dispatcher() -> Iterator[Callable[..., Dispatcher]]:
    """A factory of dispatchers that are all shut down after the test."""
    made: list[Dispatcher] = []

    def make(max_in_flight: int, **kwargs: Any) -> Dispatcher:
        dispatcher = Dispatcher(max_in_flight, **kwargs)
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        assert dispatcher.shutdown(TIMEOUT)


def blocked_until(gate: threading.Event, counter: Concurrency | None = None) -> Callable[[], str]:
    """A task that waits for ``gate`` (counted in ``counter``) and returns "ok"."""

    def task() -> str:
        if counter is not None:
            counter.enter()
        try:
            assert gate.wait(TIMEOUT)
        finally:
            if counter is not None:
                counter.leave()
        return "ok"

    return task


def threads_named(prefix: str) -> list[threading.Thread]:
    """The live threads whose name starts with ``prefix``."""
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]


def test_tasks_sharing_a_key_run_in_submission_order_one_at_a_time(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """Fifty keys of twenty tasks each run per key in order, each on_done before the next task."""
    dispatcher = make_dispatcher(8)
    keys, per_key = 50, 20
    events: dict[str, list[str]] = {f"key-{k}": [] for k in range(keys)}
    per_key_running = {key: Concurrency() for key in events}
    futures: list[Future[int]] = []

    def task(key: str, index: int) -> Callable[[], int]:
        def run() -> int:
            assert per_key_running[key].enter() == 1
            events[key].append(f"run-{index}")
            per_key_running[key].leave()
            return index

        return run

    def done(key: str, index: int) -> Callable[[Future[Any]], None]:
        def record(future: Future[Any]) -> None:
            assert future.result() == index
            events[key].append(f"done-{index}")

        return record

    for index in range(per_key):
        for key in events:
            future = dispatcher.submit(key, task(key, index), done(key, index))
            assert future is not None
            futures.append(future)

    assert not wait(futures, timeout=TIMEOUT).not_done
    wait_until(lambda: dispatcher.in_flight() == 0, timeout=TIMEOUT, what="drained")
    for key, seen in events.items():
        expected = [f"{step}-{index}" for index in range(per_key) for step in ("run", "done")]
        assert seen == expected, key


def test_parallelism_never_exceeds_max_in_flight(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """Forty blocked tasks on distinct keys run exactly four at a time on four threads."""
    dispatcher = make_dispatcher(4, capacity=40)
    gate = threading.Event()
    counter = Concurrency()

    futures = [dispatcher.submit(f"key-{n}", blocked_until(gate, counter)) for n in range(40)]

    wait_until(lambda: counter.current == 4, timeout=TIMEOUT, what="four running")
    assert dispatcher.running() == 4
    assert dispatcher.in_flight() == 40
    gate.set()
    assert not wait([f for f in futures if f is not None], timeout=TIMEOUT).not_done
    assert counter.peak == 4


def test_exception_in_task_reaches_future_and_callback_and_worker_survives(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """A raising task's exception is in its future and callback; the single thread goes on."""
    dispatcher = make_dispatcher(1)
    delivered: list[BaseException | None] = []

    def fail() -> None:
        raise LookupError("boom")

    failed = [
        dispatcher.submit("k", fail, lambda future: delivered.append(future.exception()))
        for _ in range(3)
    ]
    survivor = dispatcher.submit("k", lambda: 42)

    assert survivor is not None
    assert survivor.result(timeout=TIMEOUT) == 42
    assert all(f is not None and isinstance(f.exception(), LookupError) for f in failed)
    assert [type(exc) for exc in delivered] == [LookupError] * 3


def test_failing_callback_is_logged_and_does_not_stall_its_key(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """An exception from on_done is logged as dispatch_callback_failed; the key goes on."""
    dispatcher = make_dispatcher(1)

    def broken_callback(_future: Future[Any]) -> None:
        raise KeyError("callback bug")

    with capture_logs() as logs:
        dispatcher.submit("k", lambda: 1, broken_callback)
        after = dispatcher.submit("k", lambda: 2)
        assert after is not None
        assert after.result(timeout=TIMEOUT) == 2

    assert [entry["event"] for entry in logs] == [CALLBACK_FAILED]
    assert logs[0]["log_level"] == "error"


def test_submit_waits_for_capacity_or_times_out(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """With capacity 3 taken, submit times out with None until a task finishes."""
    dispatcher = make_dispatcher(1, capacity=3)
    gate = threading.Event()
    for n in range(3):
        dispatcher.submit(f"key-{n}", blocked_until(gate))

    assert not dispatcher.has_capacity()
    assert dispatcher.submit("late", lambda: None, timeout=0.05) is None
    assert dispatcher.wait_for_capacity(timeout=0.05) is False
    assert dispatcher.in_flight() == 3

    gate.set()
    assert dispatcher.wait_for_capacity(timeout=TIMEOUT) is True
    accepted = dispatcher.submit("late", lambda: "in", timeout=TIMEOUT)
    assert accepted is not None
    assert accepted.result(timeout=TIMEOUT) == "in"


def test_blocking_submit_resumes_when_a_task_finishes(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """A submit without timeout blocks while full and returns once a slot frees."""
    dispatcher = make_dispatcher(1, capacity=1)
    gate = threading.Event()
    dispatcher.submit("first", blocked_until(gate))
    results: list[Future[str] | None] = []
    submitter = threading.Thread(target=lambda: results.append(dispatcher.submit("second", str)))

    submitter.start()
    submitter.join(timeout=0.05)
    assert submitter.is_alive()
    gate.set()
    submitter.join(timeout=TIMEOUT)

    assert not submitter.is_alive()
    assert results[0] is not None
    assert results[0].result(timeout=TIMEOUT) == ""


def test_lowered_limit_bounds_running_tasks(make_dispatcher: Callable[..., Dispatcher]) -> None:
    """With the limit set to 2 of 4 threads, only two tasks run; raising it to 3 starts one more."""
    dispatcher = make_dispatcher(4, capacity=10)
    dispatcher.set_limit(2)
    gate = threading.Event()
    counter = Concurrency()

    futures = [dispatcher.submit(f"key-{n}", blocked_until(gate, counter)) for n in range(10)]

    wait_until(lambda: counter.current == 2, timeout=TIMEOUT, what="two running")
    assert dispatcher.running() == 2
    dispatcher.set_limit(3)
    wait_until(lambda: counter.current == 3, timeout=TIMEOUT, what="three running")
    gate.set()
    assert not wait([f for f in futures if f is not None], timeout=TIMEOUT).not_done
    assert counter.peak == 3
    assert dispatcher.limit == 3


def test_limit_lowered_while_busy_applies_as_running_tasks_finish(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """Lowering the limit to 1 with four tasks running lets later tasks run only one at a time."""
    dispatcher = make_dispatcher(4, capacity=20)
    gate = threading.Event()
    counter = Concurrency()
    first = [dispatcher.submit(f"first-{n}", blocked_until(gate, counter)) for n in range(4)]
    wait_until(lambda: counter.current == 4, timeout=TIMEOUT, what="four running")

    dispatcher.set_limit(1)
    seen: list[int] = []

    def later() -> None:
        seen.append(counter.enter())
        counter.leave()

    second = [dispatcher.submit(f"second-{n}", later) for n in range(10)]
    gate.set()

    pending: list[Future[Any]] = [f for f in [*first, *second] if f is not None]
    assert not wait(pending, timeout=TIMEOUT).not_done
    assert seen == [1] * 10


@pytest.mark.parametrize("limit", [0, 5])
def test_set_limit_rejects_values_outside_one_to_max(
    make_dispatcher: Callable[..., Dispatcher], limit: int
) -> None:
    """A limit below 1 or above max_in_flight is refused."""
    dispatcher = make_dispatcher(4)
    with pytest.raises(ValueError, match="between 1 and 4"):
        dispatcher.set_limit(limit)


def test_constructor_rejects_bad_bounds() -> None:
    """No threads and a capacity below the thread count are refused."""
    with pytest.raises(ValueError, match="max_in_flight"):
        Dispatcher(0)
    with pytest.raises(ValueError, match="capacity"):
        Dispatcher(4, capacity=3)


def test_shutdown_drains_queued_and_running_tasks(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """Shutting down waits for running and queued tasks alike, then stops the threads."""
    prefix = f"drain-{uuid.uuid4().hex[:8]}"
    dispatcher = make_dispatcher(2, capacity=20, name=prefix)
    gate = threading.Event()
    called: list[int] = []

    def note(n: int) -> Callable[[Future[Any]], None]:
        return lambda _future: called.append(n)

    futures = [dispatcher.submit(f"key-{n % 3}", blocked_until(gate), note(n)) for n in range(12)]
    outcome: list[bool] = []
    stopper = threading.Thread(target=lambda: outcome.append(dispatcher.shutdown(TIMEOUT)))

    stopper.start()
    wait_until(lambda: dispatcher.closed, timeout=TIMEOUT, what="shutdown begun")
    with pytest.raises(DispatcherClosedError):
        dispatcher.submit("late", lambda: None)
    gate.set()
    stopper.join(timeout=TIMEOUT)

    assert outcome == [True]
    assert all(f is not None and f.result() == "ok" for f in futures)
    assert sorted(called) == list(range(12))
    assert dispatcher.in_flight() == 0
    assert threads_named(prefix) == []


def test_shutdown_times_out_on_a_blocked_task_and_cancels_queued_ones(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """A shutdown that times out returns False, cancels queued tasks, and lets running ones end."""
    prefix = f"stuck-{uuid.uuid4().hex[:8]}"
    dispatcher = make_dispatcher(2, name=prefix)
    gate = threading.Event()
    called: list[str] = []
    stuck = dispatcher.submit("k", blocked_until(gate), lambda _f: called.append("stuck"))
    queued = dispatcher.submit("k", lambda: "never", lambda _f: called.append("queued"))
    wait_until(lambda: dispatcher.running() == 1, timeout=TIMEOUT, what="stuck task running")

    assert dispatcher.shutdown(0.1) is False

    assert queued is not None
    assert queued.cancelled()
    assert dispatcher.in_flight() == 1
    gate.set()
    assert stuck is not None
    assert stuck.result(timeout=TIMEOUT) == "ok"
    wait_until(lambda: dispatcher.in_flight() == 0, timeout=TIMEOUT, what="stuck task ended")
    wait_until(lambda: not threads_named(prefix), timeout=TIMEOUT, what="threads gone")
    assert called == ["stuck"]


def test_task_and_callback_see_the_submitters_context_vars(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """Context variables set around submit (structlog's bound context) are visible in the task."""
    dispatcher = make_dispatcher(2)
    seen: list[str] = []

    def submit_as(request_id: str) -> Future[str] | None:
        token = REQUEST_ID.set(request_id)
        try:
            return dispatcher.submit(
                request_id, REQUEST_ID.get, lambda _f: seen.append(REQUEST_ID.get())
            )
        finally:
            REQUEST_ID.reset(token)

    first, second = submit_as("req-1"), submit_as("req-2")

    assert first is not None
    assert second is not None
    assert (first.result(timeout=TIMEOUT), second.result(timeout=TIMEOUT)) == ("req-1", "req-2")
    wait_until(lambda: len(seen) == 2, timeout=TIMEOUT, what="callbacks")
    assert sorted(seen) == ["req-1", "req-2"]
    assert REQUEST_ID.get() == "unset"


def test_busy_while_a_task_of_the_key_is_queued_or_running(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    """busy(key) holds from submit until the key's last task finished, and only for that key."""
    dispatcher = make_dispatcher(1)
    gate = threading.Event()
    assert not dispatcher.busy("a")
    first = dispatcher.submit("a", blocked_until(gate))
    second = dispatcher.submit("b", blocked_until(gate))  # queued: the one thread is taken
    assert first is not None and second is not None
    assert dispatcher.busy("a") and dispatcher.busy("b")
    assert not dispatcher.busy("c")
    gate.set()
    wait([first, second], timeout=TIMEOUT)
    wait_until(lambda: not dispatcher.busy("a") and not dispatcher.busy("b"), timeout=TIMEOUT)
