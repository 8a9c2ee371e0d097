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

from consumer.answering import Answerer
from consumer.boundary import guarded
from consumer.checkpoint import Checkpoint, Ticket
from consumer.dispatch import Dispatcher
from consumer.errors import ConfigError, StoppingError
from consumer.flow.parking import Deferred
from consumer.flow.releaser import Releaser
from consumer.kafka_io.lag import LagMeter
from consumer.kafka_io.offsets import Partition
from consumer.kafka_io.source import RequestSource
from consumer.logs import bind_message
from consumer.metrics import Metrics
from consumer.outcome import Outcome
from consumer.pipeline.items import Admitted, Fanout
from consumer.pipeline.pipeline import Pipeline
from consumer.readiness import Readiness
from consumer.record import InboundRecord
from consumer.tracking import CompletionTracker

log = structlog.get_logger(__name__)

PartitionsCallback = Callable[[set[Partition]], None]
# builds the request source given (on_assigned, on_revoked)
SourceFactory = Callable[[PartitionsCallback, PartitionsCallback], RequestSource]

LAG_INTERVAL = 10.0  # seconds between consumer-lag measurements (one broker round trip)
POLL_TIMEOUT = 0.2  # seconds: how quickly the loop notices a stop
# /readyz says Kafka is unreachable once the group coordinator has not answered a heartbeat
# (sent every 3 s) for this long
KAFKA_SILENCE_LIMIT = 20.0


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
        releaser: Releaser | None = None,
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
            releaser: lets deferred requests go (issue 30), in its own thread.
            max_in_flight: bound on fetched-but-unfinished records.
            shutdown_timeout: how long a stop waits for in-flight work, in seconds.
            stop: set to stop; shared with the Airflow client so retry waits end at once.
            readiness: what /readyz reports; updated every loop iteration.
            metrics: the Prometheus metrics this worker updates.
        """
        self.readiness = readiness
        self._metrics = metrics
        self._pipeline = pipeline
        self._answerer = answerer
        self._tracker = tracker
        self._releaser = releaser
        self._max_in_flight = max_in_flight
        self._shutdown_timeout = shutdown_timeout
        self._dispatcher = Dispatcher(max_in_flight=max_in_flight)
        self._stop = stop
        self._fatal: ConfigError | None = None
        self._next_lag = 0.0
        self._lag_meter = lag_meter
        self._paused = False
        self._source = source_factory(self._on_assigned, self._on_revoked)
        self.checkpoint = Checkpoint(self._source, max_in_flight, metrics)

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
        if self._releaser is not None:
            self._releaser.start()
        try:
            while not self._stop.is_set() and self._fatal is None:
                self.checkpoint.commit_due()
                self.checkpoint.wait_for_room(POLL_TIMEOUT)
                self._apply_backpressure()
                records = self._source.poll(
                    max_records=self.checkpoint.room(), timeout=POLL_TIMEOUT
                )
                self._handle(records)
                self._observe_loop()
        finally:
            reason = self._shut_down()
        return reason

    def _handle(self, records: list[InboundRecord]) -> None:
        """Answer at once what needs no Airflow call; queue the rest, in order per key.

        Rejections and keys the store already maps to a run are answered on the loop's
        thread: handing them to a worker thread would cost more than answering them, and
        a duplicate replay is all such records. Nothing here waits: ``submit`` never blocks.
        """
        tickets = [self.checkpoint.ticket(record) for record in records]
        triaged = self._pipeline.triage(records, self._dispatcher.busy)
        for record, ticket, item in zip(records, tickets, triaged, strict=True):
            if isinstance(item, Fanout):  # spec §8: done once every derived request is
                shares = ticket.split(len(item.items))
                for derived, sub, share in zip(item.records, item.items, shares, strict=True):
                    self._route(derived, sub, share)
            else:
                self._route(record, item, ticket)

    def _route(self, record: InboundRecord, item: Outcome | Admitted, ticket: Ticket) -> None:
        """Answer an outcome now, or queue an admitted request behind its key's earlier ones.

        An answer on a reply topic of the request's own is queued too: its first send may
        wait for the topic's metadata (a missing topic: up to the sink's MAX_BLOCK_MS), and
        the loop thread never waits on anything but its poll.
        """
        if isinstance(item, Admitted):
            task = partial(self._execute, item, ticket)
            self._dispatcher.submit(item.request.idempotency_key, task)
        elif item.reply_topic is not None and item.idempotency_key is not None:
            task = partial(self._answer, record, item, ticket)
            self._dispatcher.submit(item.idempotency_key, task)
        else:
            self._answerer.answer(record, item, ticket)

    def _answer(self, record: InboundRecord, outcome: Outcome, ticket: Ticket) -> None:
        """Answer in a dispatcher thread; no path may keep the record's slot."""
        try:
            self._answerer.answer(record, outcome, ticket)
        except BaseException:
            ticket.abandon()
            raise

    def _execute(self, admitted: Admitted, ticket: Ticket) -> None:
        """Run in a dispatcher thread: execute, then answer (the per-message boundary)."""
        record, request = admitted.record, admitted.request
        try:
            with bind_message(record, request.idempotency_key, request.dag_id):
                began = time.monotonic()
                try:
                    if not ticket.owned():
                        raise StoppingError("partition revoked before the request started")
                    execute = self._pipeline.execute
                    outcome = guarded(record, request, execute, admitted, owned=ticket.owned)
                except StoppingError as exc:
                    log.info("request_abandoned", reason=str(exc))
                    ticket.abandon()  # no reply, no commit: the owner processes it again
                    return
                except ConfigError as exc:
                    self._fail(exc)
                    ticket.abandon()
                    return
                seconds = time.monotonic() - began
                if not ticket.owned():  # revoked meanwhile: the new owner answers it
                    log.info("request_abandoned", reason="partition revoked before the reply")
                    ticket.abandon()
                    return
                if isinstance(outcome, Deferred):  # in the store: the releaser answers it
                    log.info("request_deferred", reason=outcome.reason, due_at=outcome.due_at)
                    ticket.done()
                    return
            self._answerer.answer(record, outcome, ticket, airflow_seconds=seconds)
        except BaseException:
            ticket.abandon()  # no path may keep a record's slot (a no-op once it ended)
            raise

    def in_flight(self) -> int:
        """Records fetched whose work has not ended."""
        return self.checkpoint.in_flight()

    def _apply_backpressure(self) -> None:
        """Pause fetching while the in-flight bound is reached or Airflow or the store is held."""
        airflow_up = self._pipeline.airflow_available()
        store_up = self._pipeline.store_available()
        flow_up = self._pipeline.flow_available()
        paused = self.checkpoint.full() or not airflow_up or not store_up or not flow_up
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
        flow = self._pipeline.flow
        self.readiness.set_deferral_full(not flow_up, flow.waiting.total if flow else 0)

    def _observe_loop(self) -> None:
        if self._tracker.fatal is not None:
            self._fail(self._tracker.fatal)
        if self._releaser is not None and self._releaser.fatal is not None:
            self._fail(self._releaser.fatal)
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

    # -- rebalance ----------------------------------------------------------------------------
    def _on_assigned(self, partitions: set[Partition]) -> None:
        self.checkpoint.assigned(partitions)
        if self._paused:  # backpressure holds for new partitions too
            self._source.pause(partitions)
        self.readiness.assign(partitions)
        log.info("partitions_assigned", partitions=sorted(map(str, partitions)))

    def _on_revoked(self, partitions: set[Partition]) -> None:
        # spec §3: finished work is committed now; unfinished work is left to the new owner
        self.checkpoint.revoked(partitions)
        self.readiness.revoke(partitions)
        log.info("partitions_revoked", partitions=sorted(map(str, partitions)))

    def _shut_down(self) -> StopReason:
        self._source.pause()
        deadline = time.monotonic() + self._shutdown_timeout
        drained = self._dispatcher.shutdown(timeout=self._shutdown_timeout)
        # the last answers' acks, so that the commit covers them
        settled = self.checkpoint.wait_idle(max(0.0, deadline - time.monotonic()))
        drained = settled and drained
        if not drained:
            log.warning("drain_timed_out", in_flight=self.in_flight())
        self.checkpoint.commit()
        self._source.close()
        self._lag_meter.close()
        self._stop.set()  # also ends the tracker's wait, after a fatal error
        self._tracker.join(self._shutdown_timeout)
        if self._releaser is not None:
            self._releaser.join(self._shutdown_timeout)
        self._answerer.close()
        if self._fatal is not None:
            return StopReason.CONFIG_ERROR
        log.info("worker_stopped", drained=drained)
        return StopReason.STOPPED
