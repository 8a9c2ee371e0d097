"""The worker loop: poll → dispatch → process → publish → mark done → commit (spec §1, §3).

The loop thread owns the Kafka consumer (kafka-python's consumer is not thread-safe): it
polls, admits each record (decode, validate, policy), answers at once what needs no
Airflow call (rejections, keys the store knows), hands the rest to the dispatcher's
worker threads, commits offsets whose whole prefix is done, and pauses fetching under
backpressure. Replies and dead-letter records are sent without waiting; an offset is
marked done when the broker acknowledged them, on the producer's thread.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType

import structlog

from consumer.cli import EXIT_OK, EXIT_USAGE
from consumer.contract import TriggerRequest
from consumer.crash import crash_here
from consumer.dispatch import Dispatcher
from consumer.errors import ConfigError
from consumer.health import Readiness
from consumer.kafka_io.offsets import OffsetTracker, Partition
from consumer.kafka_io.sink import RecordSink, SinkError
from consumer.kafka_io.source import RequestSource
from consumer.logs import bind_message
from consumer.metrics import Metrics
from consumer.outcome import Outcome
from consumer.pipeline import Pipeline
from consumer.pipeline.dead_letter import Omit
from consumer.pipeline.trigger import StoppingError
from consumer.record import InboundRecord, OutboundRecord
from consumer.store import StoredEntry
from consumer.tracking import CompletionTracker

log = structlog.get_logger(__name__)

PartitionsCallback = Callable[[set[Partition]], None]
# builds the request source given (on_assigned, on_revoked)
SourceFactory = Callable[[PartitionsCallback, PartitionsCallback], RequestSource]

LAG_INTERVAL = 10.0  # seconds between consumer-lag measurements (one broker round trip)
POLL_TIMEOUT = 0.2  # seconds: how quickly the loop notices a stop or commits finished work
PUBLISH_RETRY_DELAY = 1.0  # seconds between attempts to publish a reply the broker refused


class Worker:
    """Runs one consumer-group member until SIGTERM/SIGINT or a fatal configuration error."""

    def __init__(
        self,
        *,
        source_factory: SourceFactory,
        sink: RecordSink,
        tracker: CompletionTracker,
        pipeline: Pipeline,
        build_records: Callable[[Outcome, InboundRecord, Omit], list[OutboundRecord]],
        max_in_flight: int,
        shutdown_timeout: float,
        stop: threading.Event,
        readiness: Readiness,
        metrics: Metrics,
    ) -> None:
        """Wire the worker.

        Args:
            source_factory: builds the request source given (on_assigned, on_revoked).
            sink: publishes replies and dead-letter records.
            tracker: sends the ``completed`` replies of tracked runs, in its own thread.
            pipeline: turns one record into an Outcome.
            build_records: the reply (and dead-letter) records for an outcome, the
                dead-letter one leaving out what ``Omit`` says.
            max_in_flight: bound on fetched-but-unfinished records.
            shutdown_timeout: how long a stop waits for in-flight work, in seconds.
            stop: set to stop; shared with the Airflow client so retry waits end at once.
            readiness: what /readyz reports; updated every loop iteration.
            metrics: the Prometheus metrics this worker updates.
        """
        self.tracker = OffsetTracker()
        self.readiness = readiness
        self._metrics = metrics
        self._next_lag = 0.0
        self._sink = sink
        self._tracker = tracker
        self._pipeline = pipeline
        self._build_records = build_records
        self._max_in_flight = max_in_flight
        self._shutdown_timeout = shutdown_timeout
        self._dispatcher = Dispatcher(max_in_flight=max_in_flight)
        self._stop = stop
        self._fatal: ConfigError | None = None
        self._room = threading.Event()  # set when a request is done: an in-flight slot is free
        self._answering = threading.Condition()  # guards _unsettled
        self._unsettled = 0  # answers sent whose broker acknowledgement is still awaited
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
    def run(self) -> int:
        """Consume until stopped; returns the process exit code."""
        log.info("worker_started", max_in_flight=self._max_in_flight)
        self.readiness.start()
        self._tracker.start()
        try:
            while not self._stop.is_set() and self._fatal is None:
                self._commit_done()
                self._wait_for_room()
                self._apply_backpressure()
                room = self._max_in_flight - self.tracker.in_flight()
                records = self._source.poll(max_records=max(room, 1), timeout=POLL_TIMEOUT)
                self.readiness.set_kafka(True)
                self._dispatch(records)
                self._observe_loop()
        finally:
            code = self._shut_down()
        return code

    def _wait_for_room(self) -> None:
        """While every in-flight slot is taken, wait (at most one poll timeout) for one to free.

        Waking as soon as a request is done keeps fast work (duplicates answered from the
        store) fetching without pausing: a paused poll cannot be woken early, and
        kafka-python drops the records it buffered for a paused partition.
        """
        self._room.clear()
        if self.tracker.in_flight() >= self._max_in_flight:
            self._room.wait(POLL_TIMEOUT)

    def _apply_backpressure(self) -> None:
        """Pause fetching while the in-flight bound is reached or Airflow is unreachable."""
        airflow_up = self._pipeline.airflow_available()
        paused = self.tracker.in_flight() >= self._max_in_flight or not airflow_up
        if paused:
            self._source.pause()
        else:
            self._source.resume()
        self._metrics.set_paused(paused)
        self.readiness.set_airflow(airflow_up, None if airflow_up else self._pipeline.gate.reason)

    def _observe_loop(self) -> None:
        if self._tracker.fatal is not None:
            self._fail(self._tracker.fatal)
        self.readiness.loop_tick()
        self._metrics.set_in_flight(self.tracker.in_flight())
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + LAG_INTERVAL
            self._metrics.set_lag(self._source.lag())

    def _dispatch(self, records: list[InboundRecord]) -> None:
        """Answer at once what needs no Airflow call; queue the rest, in order per key.

        Rejections and keys the store already maps to a run (read for the whole poll in
        one query) are answered on the loop's thread: handing them to a worker thread
        would cost more than answering them, and a duplicate replay is all such records.
        A key with work still queued or running waits behind it, so that same-key
        requests are answered in order.
        """
        admitted = [self._admit(record) for record in records]
        known = self._known_runs([item for item in admitted if not isinstance(item, Outcome)])
        for record, item in zip(records, admitted, strict=True):
            if isinstance(item, Outcome):
                self._answer(record, item)
                continue
            key = item.idempotency_key
            if key in known and not self._dispatcher.busy(key):
                self._answer(record, self._recall(record, item, known[key]))
            else:
                self._dispatcher.submit(key, partial(self._finish, record, item))

    def _admit(self, record: InboundRecord) -> TriggerRequest | Outcome:
        """Start tracking ``record``; decode, validate, check policy (the per-message boundary)."""
        self.tracker.started(Partition(record.topic, record.partition), record.offset)
        try:
            return self._pipeline.admit(record)
        except Exception as exc:  # the per-message boundary: a bug never stops the loop
            with bind_message(record):
                log.exception("internal_error")
            return Outcome.internal_error(record, exc)

    def _known_runs(self, requests: list[TriggerRequest]) -> dict[str, StoredEntry]:
        if not requests:
            return {}
        try:
            return self._pipeline.known_runs(requests)
        except Exception:  # a store hiccup: each request then goes the worker-thread way
            log.exception("store_read_failed")
            return {}

    def _recall(
        self, record: InboundRecord, request: TriggerRequest, known: StoredEntry
    ) -> Outcome:
        try:
            return self._pipeline.recall(record, request, known)
        except Exception as exc:  # the per-message boundary: a bug never stops the loop
            with bind_message(record, request.idempotency_key, request.dag_id):
                log.exception("internal_error")
            return Outcome.internal_error(record, exc, request=request)

    def _finish(self, record: InboundRecord, request: TriggerRequest) -> None:
        """Run in a worker thread: deduplicate and trigger, then answer. Never raises."""
        with bind_message(record, request.idempotency_key, request.dag_id):
            try:
                began = time.monotonic()
                outcome = self._pipeline.execute(record, request)
                if outcome.attempts:
                    self._metrics.observe_airflow_call(
                        str(outcome.status), time.monotonic() - began
                    )
            except StoppingError:
                return  # no reply, no commit: the next owner processes it again
            except ConfigError as exc:
                self._fail(exc)
                return
            except Exception as exc:  # the per-message boundary: a bug never stops the loop
                log.exception("internal_error")
                outcome = Outcome.internal_error(record, exc, request=request)
        self._answer(record, outcome)

    def _answer(self, record: InboundRecord, outcome: Outcome) -> None:
        """Send the reply (and dead-letter record) without waiting; done once acked.

        The broker's answer arrives on the producer's thread (``_settled``): the offset is
        marked done there, and only then can a commit cover it (spec §3 Delivery).
        """
        with self._answering:
            self._unsettled += 1
        try:
            delivery = self._sink.send(self._build_records(outcome, record, Omit.NOTHING))
        except Exception:  # a bug building the records: logged; the offset stays uncommitted
            with bind_message(record, outcome.idempotency_key, outcome.dag_id):
                log.exception("internal_error")
            self._settle_one()
            return
        delivery.on_settled(lambda error: self._settled(record, outcome, error))

    def _settled(self, record: InboundRecord, outcome: Outcome, error: SinkError | None) -> None:
        """The broker answered: mark done, or send again from a thread of its own."""
        if error is None:
            self._done(record, outcome)
            return
        # never wait on the producer's own thread: it is the one that delivers
        threading.Thread(
            target=self._send_again, args=(record, outcome, error), name="send-again", daemon=True
        ).start()

    def _send_again(self, record: InboundRecord, outcome: Outcome, error: SinkError) -> None:
        with bind_message(record, outcome.idempotency_key, outcome.dag_id):
            if self._publish(outcome, record, error):
                self._done(record, outcome)
                return
        self._settle_one()

    def _done(self, record: InboundRecord, outcome: Outcome) -> None:
        """The reply (and dead-letter record) are acked: the offset may be committed."""
        try:
            with bind_message(record, outcome.idempotency_key, outcome.dag_id):
                crash_here("after_reply", self._pipeline.crash_at)  # acked, not committed
                self.tracker.done(Partition(record.topic, record.partition), record.offset)
                self._room.set()
                self._observe(outcome, record)
                # a replay is thousands of duplicates a second, each already in its reply and
                # the dedup-hit metric: a line apiece at info would cost a third of the rate
                level = logging.DEBUG if outcome.status == "duplicate" else logging.INFO
                log.log(level, "request_done", status=str(outcome.status), code=outcome.error_code)
        finally:
            self._settle_one()

    def _settle_one(self) -> None:
        with self._answering:
            self._unsettled -= 1
            self._answering.notify_all()

    def _observe(self, outcome: Outcome, record: InboundRecord) -> None:
        """Metrics of one answered request (read from the Outcome at one point, STYLE §2)."""
        e2e = None
        if record.timestamp_ms is not None:
            e2e = time.time() - record.timestamp_ms / 1000
        code = str(outcome.error_code) if outcome.error_code else None
        self._metrics.observe_outcome(str(outcome.status), code, e2e)
        if outcome.attempts > 1:
            self._metrics.count_retry(outcome.attempts - 1)
        if outcome.status == "duplicate" and outcome.attempts == 0:
            self._metrics.count_dedup_hit()

    def _publish(self, outcome: Outcome, record: InboundRecord, error: SinkError) -> bool:
        """After ``error``, publish until acked; False when stopping first (no commit then).

        Only the records the broker did not acknowledge are sent again; a dead-letter
        record it refused as too large is sent again at once without its value (then
        without the original headers), so an oversize request never stalls its partition.
        """
        omit = Omit.NOTHING
        records = self._build_records(outcome, record, omit)
        pending = list(range(len(records)))  # positions in ``records`` not yet acknowledged
        while True:
            log.warning("publish_failed", error=str(error))
            pending = [pending[i] for i in error.unacked]
            if error.too_large and omit < Omit.VALUE_AND_HEADERS:
                omit = Omit(omit + 1)
                records = self._build_records(outcome, record, omit)
                log.warning("dead_letter_shrunk", omitted=omit.name.lower())
            elif self._stop.wait(PUBLISH_RETRY_DELAY):
                return False
            try:
                self._sink.publish([records[i] for i in pending])
                return True
            except SinkError as exc:
                error = exc

    def _fail(self, exc: ConfigError) -> None:
        if self._fatal is None:
            log.critical("configuration_error_stopping", error=str(exc))
        self._fatal = exc
        self.readiness.set_fatal(str(exc))

    # -- offsets and rebalance --------------------------------------------------------------
    def _commit_done(self) -> None:
        offsets = self.tracker.committable()
        if offsets:
            self._source.commit(offsets)
            self.tracker.committed(offsets)

    def _on_assigned(self, partitions: set[Partition]) -> None:
        self.readiness.assign(partitions)
        log.info("partitions_assigned", partitions=sorted(map(str, partitions)))

    def _on_revoked(self, partitions: set[Partition]) -> None:
        # spec §3: finished work is committed now; unfinished work is left to the new owner
        try:
            self._commit_done()
        finally:
            self.tracker.revoke(partitions)
            self.readiness.revoke(partitions)
            log.info("partitions_revoked", partitions=sorted(map(str, partitions)))

    def _shut_down(self) -> int:
        self._source.pause()
        deadline = time.monotonic() + self._shutdown_timeout
        drained = self._dispatcher.shutdown(timeout=self._shutdown_timeout)
        with self._answering:  # the last answers' acks, so that the commit covers them
            remaining = max(0.0, deadline - time.monotonic())
            drained = self._answering.wait_for(lambda: self._unsettled == 0, remaining) and drained
        if not drained:
            log.warning("drain_timed_out", in_flight=self.tracker.in_flight())
        self._commit_done()
        self._source.close()
        self._stop.set()  # also ends the tracker's wait, after a fatal error
        self._tracker.join(self._shutdown_timeout)
        self._sink.close()
        if self._fatal is not None:
            return EXIT_USAGE  # a configuration error stopped the worker (credentials, TLS)
        log.info("worker_stopped", drained=drained)
        return EXIT_OK
