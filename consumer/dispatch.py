"""Dispatcher: bounded concurrency with per-key ordering (spec §3, Ordering and concurrency).

Tasks that share a key run one at a time in submission order; tasks of different keys
run in parallel on ``max_in_flight`` threads. ``submit`` never waits: the worker loop calls
it and must only ever wait on its poll. The backlog is bounded by the caller, which admits
at most ``MAX_IN_FLIGHT`` records (each a task, or one per route for a fanned-out event).

Per task::

    submit ──► queued behind its key ──► running ──► finished (an exception is logged)
                 └──► dropped (shutdown timed out before it started)
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import structlog

from consumer.errors import DispatcherClosedError

Task: TypeAlias = Callable[[], object]
"""The work of one submission; its return value is ignored."""

CALLBACK_FAILED = "dispatch_callback_failed"


@dataclass(frozen=True, slots=True)
class _Queued:
    fn: Task
    context: contextvars.Context


def _run_logging_failure(fn: Task) -> None:
    try:
        fn()
    # a task's failure must not kill its thread or stall its key (spec §3: a poison
    # message never crashes the worker); BaseException as concurrent.futures catches it
    except BaseException:  # noqa: BLE001 -- logged with its traceback just below
        structlog.get_logger(__name__).exception(CALLBACK_FAILED)


class Dispatcher:
    """A thread pool that keeps per-key order and bounds both parallelism and backlog.

    A task runs in a copy of the submitting thread's ``contextvars`` context, so log
    context bound around ``submit`` follows the task, and an exception it raises is
    logged there as ``dispatch_callback_failed``.
    """

    def __init__(self, max_in_flight: int) -> None:
        """Start ``max_in_flight`` worker threads.

        Args:
            max_in_flight: the number of threads (``TRIGGER_CONSUMER_MAX_IN_FLIGHT``).

        Raises:
            ValueError: ``max_in_flight`` is below 1.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._lock = threading.Lock()
        # workers wait here for a runnable key
        self._work = threading.Condition(self._lock)
        # shutdown waits here for accepted tasks to finish
        self._finished = threading.Condition(self._lock)
        self._queues: dict[str, deque[_Queued]] = {}
        self._ready: deque[str] = deque()
        # keys whose head task a worker has taken; the head stays queued until it ends
        self._active: set[str] = set()
        self._accepted = 0
        self._closing = False
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"dispatch-{index}", daemon=True)
            for index in range(max_in_flight)
        ]
        for thread in self._threads:
            thread.start()

    def in_flight(self) -> int:
        """Return how many tasks are accepted but unfinished (queued plus running)."""
        with self._lock:
            return self._accepted

    def busy(self, key: str) -> bool:
        """Return whether a task of ``key`` is accepted but unfinished (queued or running)."""
        with self._lock:
            return key in self._queues

    def submit(self, key: str, fn: Task) -> None:
        """Queue ``fn`` behind the earlier tasks of ``key``; never waits.

        ``fn`` runs once the key's earlier tasks finished and a thread is free.

        Args:
            key: the ordering key (the idempotency key or Kafka message key).
            fn: the work.

        Raises:
            DispatcherClosedError: ``shutdown`` has begun.
        """
        task = _Queued(fn, contextvars.copy_context())
        with self._lock:
            if self._closing:
                raise DispatcherClosedError("the dispatcher is shutting down; no new tasks")
            self._accepted += 1
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = deque([task])
                self._ready.append(key)
                self._work.notify()
            else:
                queue.append(task)

    def shutdown(self, timeout: float) -> bool:
        """Stop accepting tasks, let accepted ones finish, and stop the threads.

        Queued tasks still run while the time lasts. If ``timeout`` passes first, the
        tasks that have not started are dropped and running ones are left to finish in
        their daemon threads.

        Args:
            timeout: seconds to wait at most for the accepted tasks.

        Returns:
            Whether every accepted task finished in time.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            drained = self._finished.wait_for(lambda: self._accepted == 0, timeout)
            if not drained:
                self._drop_queued()
            self._stopped = True
            self._work.notify_all()
        if drained:
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        return drained

    def _drop_queued(self) -> None:
        for key in list(self._queues):
            queue = self._queues[key]
            keep = 1 if key in self._active else 0
            while len(queue) > keep:
                queue.pop()
                self._accepted -= 1
            if not queue:
                del self._queues[key]
        self._ready.clear()

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._work.wait_for(lambda: self._stopped or bool(self._ready))
                if self._stopped:
                    return
                key = self._ready.popleft()
                task = self._queues[key][0]
                self._active.add(key)
            task.context.run(_run_logging_failure, task.fn)
            with self._lock:
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
