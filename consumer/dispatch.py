"""Dispatcher: bounded concurrency with per-key ordering (spec §3, Ordering and concurrency).

Tasks that share a key run one at a time in submission order; tasks of different keys
run in parallel on a fixed pool of threads, at most ``limit`` at once. ``submit`` waits
while ``capacity`` tasks are accepted but unfinished, so the worker never holds more
fetched messages than that.

Per task::

    submit ──► queued behind its key ──► running (fn, then on_done) ──► finished
                 └──► cancelled (shutdown timed out first; on_done is not called)
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import structlog

T = TypeVar("T")

OnDone: TypeAlias = Callable[["Future[Any]"], None]
"""Called in the worker thread with the task's finished future, before the key's next task."""

CALLBACK_FAILED = "dispatch_callback_failed"


class DispatcherClosedError(RuntimeError):
    """Raised when a task is submitted after ``shutdown`` began: a bug in the caller."""


@dataclass(frozen=True, slots=True)
class _Task:
    fn: Callable[[], Any]
    future: Future[Any]
    on_done: OnDone | None
    context: contextvars.Context


class Dispatcher:
    """A thread pool that keeps per-key order and bounds both parallelism and backlog.

    ``fn`` and ``on_done`` run in a copy of the submitting thread's ``contextvars``
    context, so log context bound around ``submit`` follows the task.
    """

    def __init__(
        self, max_in_flight: int, *, capacity: int | None = None, name: str = "dispatch"
    ) -> None:
        """Start ``max_in_flight`` worker threads.

        Args:
            max_in_flight: the number of threads, and the upper bound of ``limit``
                (``TRIGGER_CONSUMER_MAX_IN_FLIGHT``).
            capacity: how many tasks may be accepted but unfinished (queued plus
                running); ``2 * max_in_flight`` by default, so that a few hot keys
                queueing behind themselves do not starve the pool.
            name: prefix of the worker threads' names.

        Raises:
            ValueError: ``max_in_flight`` is below 1 or ``capacity`` below it.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        capacity = 2 * max_in_flight if capacity is None else capacity
        if capacity < max_in_flight:
            raise ValueError(f"capacity {capacity} is below max_in_flight {max_in_flight}")
        self._max_in_flight = max_in_flight
        self._capacity = capacity
        self._limit = max_in_flight
        self._lock = threading.Lock()
        # workers wait here for a runnable key and a free slot under the limit
        self._work = threading.Condition(self._lock)
        # submitters and shutdown wait here for accepted tasks to finish
        self._finished = threading.Condition(self._lock)
        self._queues: dict[str, deque[_Task]] = {}
        self._ready: deque[str] = deque()
        # keys whose head task a worker has taken; the head stays queued until it ends
        self._active: set[str] = set()
        self._accepted = 0
        self._running = 0
        self._closing = False
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{index}", daemon=True)
            for index in range(max_in_flight)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def max_in_flight(self) -> int:
        """The number of worker threads: the highest possible ``limit``."""
        return self._max_in_flight

    @property
    def capacity(self) -> int:
        """How many tasks may be accepted but unfinished."""
        return self._capacity

    @property
    def limit(self) -> int:
        """How many tasks may run at once right now."""
        with self._lock:
            return self._limit

    @property
    def closed(self) -> bool:
        """Whether ``shutdown`` has begun: ``submit`` accepts nothing more."""
        with self._lock:
            return self._closing

    def set_limit(self, limit: int) -> None:
        """Change how many tasks may run at once; running tasks are never interrupted.

        Lowering the limit takes effect as running tasks finish; raising it starts
        waiting tasks at once.

        Args:
            limit: between 1 and ``max_in_flight``.

        Raises:
            ValueError: ``limit`` is out of range.
        """
        if not 1 <= limit <= self._max_in_flight:
            raise ValueError(f"limit must be between 1 and {self._max_in_flight}, got {limit}")
        with self._lock:
            self._limit = limit
            self._work.notify_all()

    def in_flight(self) -> int:
        """Return how many tasks are accepted but unfinished (queued plus running)."""
        with self._lock:
            return self._accepted

    def busy(self, key: str) -> bool:
        """Return whether a task of ``key`` is accepted but unfinished (queued or running)."""
        with self._lock:
            return key in self._queues

    def running(self) -> int:
        """Return how many tasks are running now."""
        with self._lock:
            return self._running

    def has_capacity(self) -> bool:
        """Return whether ``submit`` would accept a task without waiting."""
        with self._lock:
            return self._accepted < self._capacity

    def wait_for_capacity(self, timeout: float | None = None) -> bool:
        """Wait until ``submit`` would accept a task without waiting.

        Args:
            timeout: seconds to wait at most; None waits indefinitely.

        Returns:
            Whether there is capacity now.
        """
        with self._lock:
            return self._finished.wait_for(lambda: self._accepted < self._capacity, timeout)

    def submit(
        self,
        key: str,
        fn: Callable[[], T],
        on_done: OnDone | None = None,
        *,
        timeout: float | None = None,
    ) -> Future[T] | None:
        """Queue ``fn`` behind the earlier tasks of ``key``, waiting for capacity if needed.

        ``fn`` runs once the key's earlier tasks finished and a slot under the limit is
        free. Its return value or exception lands in the returned future; then
        ``on_done(future)`` runs in the same worker thread. An exception from ``fn``
        never reaches the worker thread; one from ``on_done`` is logged.

        Args:
            key: the ordering key (the idempotency key or Kafka message key).
            fn: the work.
            on_done: called with the finished future before the key's next task starts.
            timeout: seconds to wait for capacity at most; None waits indefinitely.

        Returns:
            The task's future, or None if no capacity freed up within ``timeout``.

        Raises:
            DispatcherClosedError: ``shutdown`` has begun.
        """
        future: Future[T] = Future()
        task = _Task(fn, future, on_done, contextvars.copy_context())
        with self._lock:
            self._ensure_open()
            if not self._finished.wait_for(
                lambda: self._closing or self._accepted < self._capacity, timeout
            ):
                return None
            self._ensure_open()
            self._accepted += 1
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = deque([task])
                self._ready.append(key)
                self._work.notify()
            else:
                queue.append(task)
        return future

    def _ensure_open(self) -> None:
        if self._closing:
            raise DispatcherClosedError("the dispatcher is shutting down; no new tasks")

    def shutdown(self, timeout: float) -> bool:
        """Stop accepting tasks, let accepted ones finish, and stop the threads.

        Queued tasks still run while the time lasts. If ``timeout`` passes first, the
        tasks that have not started are cancelled (their ``on_done`` is not called) and
        running ones are left to finish in their daemon threads.

        Args:
            timeout: seconds to wait at most for the accepted tasks.

        Returns:
            Whether every accepted task finished in time.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            self._finished.notify_all()
            drained = self._finished.wait_for(lambda: self._accepted == 0, timeout)
            if not drained:
                self._cancel_queued()
            self._stopped = True
            self._work.notify_all()
        if drained:
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        return drained

    def _cancel_queued(self) -> None:
        for key in list(self._queues):
            queue = self._queues[key]
            keep = 1 if key in self._active else 0
            while len(queue) > keep:
                queue.pop().future.cancel()
                self._accepted -= 1
            if not queue:
                del self._queues[key]
        self._ready.clear()

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._work.wait_for(
                    lambda: self._stopped or (bool(self._ready) and self._running < self._limit)
                )
                if self._stopped:
                    return
                key = self._ready.popleft()
                task = self._queues[key][0]
                self._active.add(key)
                self._running += 1
            self._run(task)
            with self._lock:
                self._running -= 1
                self._accepted -= 1
                self._active.discard(key)
                queue = self._queues[key]
                queue.popleft()
                if queue:
                    self._ready.append(key)
                else:
                    del self._queues[key]
                self._work.notify()
                self._finished.notify_all()

    @staticmethod
    def _run(task: _Task) -> None:
        if not task.future.set_running_or_notify_cancel():
            return
        try:
            result = task.context.run(task.fn)
        # the task's own failure belongs to its future, never to this thread (spec §3:
        # a poison message never crashes the worker); BaseException as in concurrent.futures
        except BaseException as exc:  # noqa: BLE001 -- handed over through the future
            task.future.set_exception(exc)
        else:
            task.future.set_result(result)
        if task.on_done is not None:
            try:
                task.context.run(task.on_done, task.future)
            except Exception:  # noqa: BLE001 -- logged with its traceback just below
                # a failing callback must not kill the thread or stall the key's queue
                structlog.get_logger(__name__).exception(CALLBACK_FAILED)
