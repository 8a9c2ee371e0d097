"""The worker loop: poll → triage → answer or submit → commit (spec §1, §3).

The loop thread owns the Kafka consumer (kafka-python's consumer is not thread-safe)::

    poll ─► pipeline.triage ─┬─► Outcome ──────────────────────────► answerer.answer
                             └─► Admitted ─► dispatcher (per key) ─► pipeline.execute ─► answer
    answer acked (producer thread) ─► offset done ─► loop commits each contiguous done prefix

Fetching pauses while ``MAX_IN_FLIGHT`` records are unfinished or Airflow is down
(backpressure); SIGTERM stops fetching, drains within ``SHUTDOWN_TIMEOUT`` and commits.
``run`` returns why it stopped; the CLI maps that to an exit code.

Group faults are survived, not raised (spec §3): a failed commit is retried at the next
loop; each partition's assignment has an epoch, and work fetched under an older epoch
(before a revoke, an expulsion or a backwards offset reset) starts no Airflow call,
publishes nothing and commits nothing: the partition's owner answers it again.
"""

from __future__ import annotations

import enum
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType

import structlog
from kafka.errors import KafkaError

from consumer.answering import Answerer, OnDone
from consumer.countdown import Countdown
from consumer.dispatch import Dispatcher
from consumer.errors import ConfigError, StoppingError
from consumer.health import Readiness
from consumer.kafka_io.lag import LagMeter
from consumer.kafka_io.offsets import OffsetTracker, Partition
from consumer.kafka_io.source import RequestSource
from consumer.logs import bind_message
from consumer.metrics import Metrics
from consumer.outcome import Outcome
from consumer.pipeline import Admitted, Fanout, Pipeline
from consumer.record import InboundRecord
from consumer.tracking import CompletionTracker

log = structlog.get_logger(__name__)

PartitionsCallback = Callable[[set[Partition]], None]
# builds the request source given (on_assigned, on_revoked)
SourceFactory = Callable[[PartitionsCallback, PartitionsCallback], RequestSource]

LAG_INTERVAL = 10.0  # seconds between consumer-lag measurements (one broker round trip)
POLL_TIMEOUT = 0.2  # seconds: how quickly the loop notices a stop
# seconds between routine commits: each is a broker round trip, and a crash re-reads at most
# this much answered work (answered again from the store, as duplicates)
COMMIT_INTERVAL = 1.0
# a full loop waits until this share of its slots is free, so that a poll fetches (and the
# store reads) a batch instead of one record per freed slot
REFILL_SHARE = 4
# /readyz says Kafka is unreachable once the group coordinator has not answered a heartbeat
# (sent every 3 s) for this long
KAFKA_SILENCE_LIMIT = 20.0

Token = tuple[Partition, int]
"""A record's partition and the epoch of its assignment when it was fetched."""


class StopReason(enum.Enum):
    """Why ``Worker.run`` returned."""

    STOPPED = "stopped"  # SIGTERM/SIGINT or ``stop()``: drained and committed
    CONFIG_ERROR = "config_error"  # credentials or TLS refused: stop consuming


class Worker:
    """Runs one consumer-group member until SIGTERM/SIGINT or a fatal configuration error."""

    def __init__(
        self,
        *,
        source_factory: SourceFactory,
        lag_meter: LagMeter,
        pipeline: Pipeline,
        answerer: Answerer,
        tracker: CompletionTracker,
        max_in_flight: int,
        shutdown_timeout: float,
        stop: threading.Event,
        readiness: Readiness,
        metrics: Metrics,
    ) -> None:
        """Wire the worker.

        Args:
            source_factory: builds the request source given (on_assigned, on_revoked).
            lag_meter: measures consumer lag off the loop thread.
            pipeline: triages records and executes admitted requests.
            answerer: publishes each request's answer; says when it is acknowledged.
            tracker: sends the ``completed`` replies of tracked runs, in its own thread.
            max_in_flight: bound on fetched-but-unfinished records.
            shutdown_timeout: how long a stop waits for in-flight work, in seconds.
            stop: set to stop; shared with the Airflow client so retry waits end at once.
            readiness: what /readyz reports; updated every loop iteration.
            metrics: the Prometheus metrics this worker updates.
        """
        self.offsets = OffsetTracker()
        self.readiness = readiness
        self._metrics = metrics
        self._pipeline = pipeline
        self._answerer = answerer
        self._tracker = tracker
        self._max_in_flight = max_in_flight
        self._shutdown_timeout = shutdown_timeout
        self._dispatcher = Dispatcher(max_in_flight=max_in_flight)
        self._stop = stop
        self._fatal: ConfigError | None = None
        self._next_lag = 0.0
        self._next_commit = 0.0
        self._lag_meter = lag_meter
        self._room = threading.Event()  # set once in flight is down to the refill mark
        self._in_flight = 0  # records fetched whose work has not ended (the MAX_IN_FLIGHT bound)
        # a full loop waits until in flight drops to this, so that a poll fetches a batch
        self._refill_at = max_in_flight - max(1, max_in_flight // REFILL_SHARE)
        self._in_flight_lock = threading.Lock()
        self._epochs: dict[Partition, int] = {}  # bumped at every assignment change
        self._paused = False
        self._source = source_factory(self._on_assigned, self._on_revoked)

    # -- signals and control ----------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop fetching and drain; a second SIGINT exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.readiness.set_stopping()
        self._stop.set()

    def stop(self) -> None:
        """Ask the loop to stop (as SIGTERM does)."""
        self._stop.set()

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> StopReason:
        """Consume until stopped or a configuration error; say which."""
        log.info("worker_started", max_in_flight=self._max_in_flight)
        self.readiness.start()
        self._tracker.start()
        try:
            while not self._stop.is_set() and self._fatal is None:
                self._commit_due()
                self._wait_for_room()
                self._apply_backpressure()
                room = self._max_in_flight - self.in_flight()
                records = self._source.poll(max_records=max(room, 1), timeout=POLL_TIMEOUT)
                self._handle(records)
                self._observe_loop()
        finally:
            reason = self._shut_down()
        return reason

    def _handle(self, records: list[InboundRecord]) -> None:
        """Answer at once what needs no Airflow call; queue the rest, in order per key.

        Rejections and keys the store already maps to a run are answered on the loop's
        thread: handing them to a worker thread would cost more than answering them, and
        a duplicate replay is all such records.
        """
        tokens = [self._start(record) for record in records]
        triaged = self._pipeline.triage(records, self._dispatcher.busy)
        for record, token, item in zip(records, tokens, triaged, strict=True):
            if isinstance(item, Fanout):
                self._fan_out(record, token, item)
            elif isinstance(item, Outcome):
                self._answerer.answer(record, item, partial(self._done, token))
            else:
                task = partial(self._execute, item, token)
                self._dispatcher.submit(item.request.idempotency_key, task)

    def _fan_out(self, record: InboundRecord, token: Token, fanout: Fanout) -> None:
        """An event's derived requests: its offset is done once all are answered (spec §8)."""
        countdown = Countdown(record, len(fanout.items), partial(self._done, token), self._end)
        for derived, item in zip(fanout.records, fanout.items, strict=True):
            if isinstance(item, Outcome):
                self._answerer.answer(derived, item, countdown.answered)
            else:
                task = partial(self._execute, item, token, countdown.answered, countdown.abandoned)
                self._dispatcher.submit(item.request.idempotency_key, task)

    def _start(self, record: InboundRecord) -> Token:
        """Count ``record`` in flight and track its offset; returns its token."""
        partition = Partition(record.topic, record.partition)
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            self.offsets.started(partition, record.offset)
        except ValueError:  # the position moved back: topic re-created, truncated, or reset
            log.warning("offset_reset", partition=str(partition), offset=record.offset)
            self._new_epoch([partition])
            self.offsets.revoke([partition])
            self.offsets.started(partition, record.offset)
        return partition, self._epochs.get(partition, 0)

    def _current(self, token: Token) -> bool:
        """Whether the record's partition is still owned under the epoch it was fetched in."""
        partition, epoch = token
        return self._epochs.get(partition, 0) == epoch

    def _execute(
        self,
        admitted: Admitted,
        token: Token,
        on_done: OnDone | None = None,
        on_abandoned: Callable[[], None] | None = None,
    ) -> None:
        """Run in a dispatcher thread: execute, then answer (the per-message boundary).

        ``on_done`` and ``on_abandoned`` replace marking the offset done and freeing the
        slot, for one of an event's derived requests.
        """
        done = on_done or partial(self._done, token)
        end = on_abandoned or self._end
        record, request = admitted.record, admitted.request
        with bind_message(record, request.idempotency_key, request.dag_id):
            began = time.monotonic()
            try:
                if not self._current(token):
                    raise StoppingError("partition revoked before the request started")
                outcome = self._pipeline.execute(admitted, owned=partial(self._current, token))
            except StoppingError as exc:
                log.info("request_abandoned", reason=str(exc))
                end()  # no reply, no commit: the owner processes it again
                return
            except ConfigError as exc:
                self._fail(exc)
                return
            except Exception as exc:  # the per-message boundary: a bug never stops the loop
                log.exception("internal_error")
                outcome = Outcome.internal_error(record, exc, request=request)
            seconds = time.monotonic() - began
            if not self._current(token):  # revoked meanwhile: the new owner answers it
                log.info("request_abandoned", reason="partition revoked before the reply")
                end()
                return
        self._answerer.answer(record, outcome, done, airflow_seconds=seconds)

    def _done(self, token: Token, record: InboundRecord) -> None:
        """The answer is acknowledged: the offset may be committed, a slot is free."""
        if self._current(token):
            self.offsets.done(token[0], record.offset)
        self._end()

    def _end(self) -> None:
        """The record's work ended (answered or abandoned): its in-flight slot is free.

        The loop is woken only once there is room for a batch: waking it at every freed
        slot cost a thread wake-up per request for nothing.
        """
        with self._in_flight_lock:
            self._in_flight -= 1
            room = self._in_flight <= self._refill_at
        if room:
            self._room.set()

    def in_flight(self) -> int:
        """Records fetched whose work has not ended."""
        with self._in_flight_lock:
            return self._in_flight

    def _wait_for_room(self) -> None:
        """While every in-flight slot is taken, wait (at most one poll timeout) for room.

        Room is a ``REFILL_SHARE`` of the slots, so the next poll fetches a batch. Waking as
        soon as that much is done keeps fast work (duplicates answered from the store)
        fetching without pausing: a paused poll cannot be woken early, and kafka-python
        drops the records it buffered for a paused partition.
        """
        if self.in_flight() < self._max_in_flight:
            return
        # only this thread adds work, so once in flight is down to the refill mark it stays
        self._room.clear()
        if self.in_flight() > self._refill_at:
            self._room.wait(POLL_TIMEOUT)

    def _apply_backpressure(self) -> None:
        """Pause fetching while the in-flight bound is reached or Airflow or the store is held."""
        airflow_up = self._pipeline.airflow_available()
        store_up = self._pipeline.store_available()
        paused = self.in_flight() >= self._max_in_flight or not airflow_up or not store_up
        if paused:
            self._source.pause()
        else:
            self._source.resume()
        self._paused = paused
        self._metrics.set_paused(paused)
        self._metrics.set_held("airflow", not airflow_up)
        self._metrics.set_held("store", not store_up)
        self.readiness.set_airflow(airflow_up, None if airflow_up else self._pipeline.gate.reason)
        self.readiness.set_store(store_up, self._pipeline.store_hold.reason)

    def _observe_loop(self) -> None:
        if self._tracker.fatal is not None:
            self._fail(self._tracker.fatal)
        self.readiness.loop_tick()
        silence = self._source.broker_silence()
        if silence < KAFKA_SILENCE_LIMIT:
            self.readiness.set_kafka(True)
        else:
            self.readiness.set_kafka(False, "the group coordinator has not answered for a while")
        stalled = self._source.stalled()
        self.readiness.set_stalled(stalled)
        self._metrics.set_stalled(len(stalled))
        self._metrics.set_in_flight(self.in_flight())
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + LAG_INTERVAL
            self._lag_meter.measure(self._source.positions())

    def _fail(self, exc: ConfigError) -> None:
        if self._fatal is None:
            log.critical("configuration_error_stopping", error=str(exc))
        self._fatal = exc
        self.readiness.set_fatal(str(exc))

    # -- offsets and rebalance --------------------------------------------------------------
    def _commit_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_commit:
            self._next_commit = now + COMMIT_INTERVAL
            self._commit_done()

    def _commit_done(self) -> None:
        """Commit every partition's done prefix; a failure is logged and retried next loop."""
        self.offsets.skip_to(self._source.positions())
        offsets = self.offsets.committable()
        if not offsets:
            return
        try:
            self._source.commit(offsets)
        except KafkaError as exc:  # rebalance, coordinator moved, member expelled: rejoin
            log.warning("commit_failed", error=str(exc))
            self._metrics.count_commit_failure()
            return
        self.offsets.committed(offsets)

    def _new_epoch(self, partitions: set[Partition] | list[Partition]) -> None:
        for partition in partitions:
            self._epochs[partition] = self._epochs.get(partition, 0) + 1

    def _on_assigned(self, partitions: set[Partition]) -> None:
        self._new_epoch(partitions)
        if self._paused:  # backpressure holds for new partitions too
            self._source.pause(partitions)
        self.readiness.assign(partitions)
        log.info("partitions_assigned", partitions=sorted(map(str, partitions)))

    def _on_revoked(self, partitions: set[Partition]) -> None:
        # spec §3: finished work is committed now; unfinished work is left to the new owner
        self._commit_done()
        self._new_epoch(partitions)
        self.offsets.revoke(partitions)
        self.readiness.revoke(partitions)
        log.info("partitions_revoked", partitions=sorted(map(str, partitions)))

    def _shut_down(self) -> StopReason:
        self._source.pause()
        deadline = time.monotonic() + self._shutdown_timeout
        drained = self._dispatcher.shutdown(timeout=self._shutdown_timeout)
        # the last answers' acks, so that the commit covers them
        settled = self._answerer.wait_settled(max(0.0, deadline - time.monotonic()))
        drained = settled and drained
        if not drained:
            log.warning("drain_timed_out", in_flight=self.in_flight())
        self._commit_done()
        self._source.close()
        self._lag_meter.close()
        self._stop.set()  # also ends the tracker's wait, after a fatal error
        self._tracker.join(self._shutdown_timeout)
        self._answerer.close()
        if self._fatal is not None:
            return StopReason.CONFIG_ERROR
        log.info("worker_stopped", drained=drained)
        return StopReason.STOPPED
