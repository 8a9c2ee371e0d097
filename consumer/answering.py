"""Answering: an ``Outcome`` → its reply (and dead-letter) records → the broker (spec §2, §3).

Every request's answer leaves through ``Answerer.answer``::

    answer ─► records (reply; dead letter for rejected/error) ─► sink.send, no waiting
                └─ acked (producer thread) ─► claim done, then the observers (observers.py)
                └─ refused ─► own thread: re-send the unacked ones until acked, each
                              changed as ``resend.after_failure`` says (a dead letter
                              shrunk, a refused reply topic replaced by the default one)

An offset is marked done (the ``done`` callback) only once the broker acknowledged every record of
its answer, so a commit never covers an unanswered request (spec §3 Delivery). No exception
leaves an answer unsent: a record the producer refuses is settled as failed and re-sent, and
an answer whose records cannot even be built (a bug) is answered ``internal_error``. The
``completed`` reply of a tracked run goes through ``publish_completed``, which waits; it
carries the same ``route`` and trace-context headers as the request's first reply, read
from what the store kept of the request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from consumer.boundary import guarded
from consumer.crash import CrashPoint, crash_here
from consumer.errors import SinkError
from consumer.kafka_io.sink import RecordSink
from consumer.logs import bind_message
from consumer.metrics import Metrics
from consumer.observers import NO_AIRFLOW, LogObserver, MetricsObserver, Observer, Timing, notify
from consumer.outcome import Outcome
from consumer.pipeline.dead_letter import dead_letter_record, needs_dead_letter
from consumer.pipeline.reply import reply_record
from consumer.record import DerivedRecord, Headers, InboundRecord, OutboundRecord
from consumer.resend import Outgoing, Role, after_failure, first_send, pending
from consumer.store import RequestOrigin
from consumer.trace import TraceContext

log = structlog.get_logger(__name__)

PUBLISH_RETRY_DELAY = 1.0  # seconds between attempts to publish a reply the broker refused
# seconds a reply topic the broker refused for good is remembered: later replies naming it go
# straight to the default topic instead of each spending REPLY_TOPIC_ATTEMPTS refusals
REFUSED_TOPIC_MEMORY = 300.0
REPLY_TOPIC_REFUSED_HEADER = "reply-topic-refused"
ROUTE_HEADER = "route"  # on the reply and dead letter of a route's request (spec §8 Routes)


class Claim(Protocol):
    """A request's claim on its offset (``checkpoint.Ticket``): ended once, either way."""

    def done(self) -> None:
        """The answer was acknowledged: the offset may be committed."""
        ...

    def abandon(self) -> None:
        """No answer was published: the partition's owner processes the request again."""
        ...


class Answerer:
    """Publishes each request's answer and reports it done once the broker acknowledged it."""

    def __init__(
        self,
        sink: RecordSink,
        *,
        reply_topic: str,
        dlq_topic: str,
        worker: str,
        metrics: Metrics,
        stop: threading.Event,
        crash_at: CrashPoint | None = None,
        trace_context: bool = True,
        observers: Sequence[Observer] | None = None,
    ) -> None:
        """Prepare the answerer.

        Args:
            sink: the producer replies and dead-letter records go through.
            reply_topic: the default reply topic.
            dlq_topic: the dead-letter topic.
            worker: which worker instance and version answers, like ``host-1/0.1.0``.
            metrics: the Prometheus metrics updated per answered request.
            stop: set when the worker stops; a refused answer is no longer re-sent then.
            crash_at: test-only fault hook (consumer/crash.py).
            trace_context: echo a request's W3C trace context as reply headers.
            observers: told of each answered request (``observers.py``); by default its
                metrics and its ``request_done`` log line.
        """
        self._sink = sink
        self._reply_topic = reply_topic
        self._dlq_topic = dlq_topic
        self._worker = worker
        self._metrics = metrics
        self._stop = stop
        self._crash_at = crash_at
        self._trace_context = trace_context
        self._refused_until: dict[str, float] = {}  # reply topic -> monotonic time
        self._observers = (
            (MetricsObserver(metrics), LogObserver()) if observers is None else tuple(observers)
        )

    def records(
        self, outcome: Outcome, record: InboundRecord, states: tuple[Outgoing, ...]
    ) -> list[OutboundRecord]:
        """The records that answer a request: the reply and, when needed, the dead letter.

        Args:
            outcome: what processing the request produced.
            record: the request record.
            states: what re-sending changed of each record (``resend``); records already
                acknowledged are left out.

        Returns:
            The records to send, reply first.
        """
        built = []
        for state in states:
            if state.acked:
                continue
            if state.role is Role.DEAD_LETTER:
                built.append(self._dead_letter(outcome, record, state))
            else:
                built.append(self._reply(outcome, record, state))
        return built

    def _reply(self, outcome: Outcome, record: InboundRecord, state: Outgoing) -> OutboundRecord:
        reply = reply_record(
            outcome,
            default_topic=self._reply_topic,
            worker=self._worker,
            request_key=None if state.keyless else record.key,
        )
        route = record.route if isinstance(record, DerivedRecord) else None
        reply = self._echoing(reply, route, record.trace_context())
        return self._redirected(reply) if state.redirected else reply

    def _redirected(self, reply: OutboundRecord) -> OutboundRecord:
        """The reply on the default reply topic, naming the topic the broker refused."""
        if reply.topic == self._reply_topic:
            return reply
        refused = (REPLY_TOPIC_REFUSED_HEADER, reply.topic.encode("utf-8"))
        return replace(reply, topic=self._reply_topic, headers=(*reply.headers, refused))

    def _dead_letter(
        self, outcome: Outcome, record: InboundRecord, state: Outgoing
    ) -> OutboundRecord:
        letter = dead_letter_record(outcome, record, topic=self._dlq_topic, omit=state.omit)
        if isinstance(record, DerivedRecord):
            letter = replace(letter, headers=(*letter.headers, _route_header(record.route)))
        return letter

    def _echoing(
        self, reply: OutboundRecord, route: str | None, trace: TraceContext | None
    ) -> OutboundRecord:
        """The reply with the headers it echoes of its request: route and trace context.

        Args:
            reply: the reply record.
            route: the route that derived the request, or None.
            trace: the request's trace context, or None; left out when trace context is off.

        Returns:
            The reply, with a ``route`` header and the ``traceparent``/``tracestate`` headers.
        """
        echoed: Headers = () if route is None else (_route_header(route),)
        if trace is not None and self._trace_context:
            echoed += trace.as_headers()
        return replace(reply, headers=reply.headers + echoed) if echoed else reply

    def answer(
        self,
        record: InboundRecord,
        outcome: Outcome,
        claim: Claim,
        *,
        airflow_seconds: float | None = None,
    ) -> None:
        """Send the answer without waiting; ``claim`` ends once the broker answered.

        Never raises: whatever happens, ``claim`` ends (done once acknowledged, abandoned
        when the worker stops before that).

        Args:
            record: the request record.
            outcome: what processing it produced.
            claim: done on the producer's (or a re-send) thread once acknowledged.
            airflow_seconds: how long its Airflow calls took, when it made any.
        """
        timing = NO_AIRFLOW if airflow_seconds is None else Timing(airflow_seconds)
        built = guarded(record, None, self._first_send, outcome, record)
        if isinstance(built, Outcome):  # a bug building the answer: answered internal_error
            outcome = built
            built = guarded(record, None, self._first_send, outcome, record)
        if isinstance(built, Outcome):  # a bug on a bug: nothing can be built; the loop goes on
            claim.abandon()
            return
        states, records = built
        delivery = self._sink.send(records)  # never raises: refusals settle as failures
        sent = _Answer(record, outcome, claim, timing)
        delivery.on_settled(lambda error: self._settled(sent, error, states))

    def _first_send(
        self, outcome: Outcome, record: InboundRecord
    ) -> tuple[tuple[Outgoing, ...], list[OutboundRecord]]:
        """The answer's records before any send, with their re-send states."""
        states = self._first_states(outcome)
        return states, self.records(outcome, record, states)

    def _first_states(self, outcome: Outcome) -> tuple[Outgoing, ...]:
        """The answer's records before any send: a remembered refused reply topic redirected."""
        states = first_send(needs_dead_letter(outcome))
        topic = outcome.reply_topic
        if topic is None or self._refused_until.get(topic, 0.0) < time.monotonic():
            return states
        self._metrics.count_reply_topic_refused()
        return (replace(states[0], redirected=True), *states[1:])

    def publish_completed(self, outcome: Outcome, origin: RequestOrigin | None = None) -> None:
        """Publish a tracked run's ``completed`` reply; returns once acknowledged.

        A reply topic the broker refuses for good is replaced by the default one, as for the
        request's first reply (``resend.after_failure``; a topic remembered as refused at once).

        Args:
            outcome: the ``completed`` outcome.
            origin: what the store kept of the request: the reply echoes its route and trace
                context as the request's first reply did; None (an entry of an old store
                schema) echoes neither.

        Raises:
            SinkError: the broker did not acknowledge it (the tracker tries again later).
        """
        reply = reply_record(outcome, default_topic=self._reply_topic, worker=self._worker)
        if origin is not None:
            reply = self._echoing(reply, origin.route, origin.trace)
        states = self._first_states(outcome)
        while True:
            try:
                self._sink.publish([self._redirected(reply) if states[0].redirected else reply])
                return
            except SinkError as error:
                before = states
                states, _ = after_failure(states, error)
                self._report_changes(before, states, outcome)
                # only a refused topic is worth another try now; anything else waits a poll
                if states[0].refusals == before[0].refusals or self._stop.wait(PUBLISH_RETRY_DELAY):
                    raise

    def close(self) -> None:
        """Flush and close the producer."""
        self._sink.close()

    def _settled(
        self, answer: _Answer, error: SinkError | None, states: tuple[Outgoing, ...]
    ) -> None:
        """The broker answered: done, or send again from a thread of its own."""
        if error is None:
            self._done(answer)
            return
        # never wait on the producer's own thread: it is the one that delivers
        threading.Thread(
            target=self._send_again,
            args=(answer, error, states),
            name="send-again",
            daemon=True,
        ).start()

    def _send_again(self, answer: _Answer, error: SinkError, states: tuple[Outgoing, ...]) -> None:
        record, outcome = answer.record, answer.outcome
        try:
            with bind_message(record, outcome.idempotency_key, outcome.dag_id):
                sent = self._publish(outcome, record, error, states)
        except BaseException:
            answer.claim.abandon()  # a bug re-sending: the offset stays for the next owner
            raise
        if sent:
            self._done(answer)
            return
        answer.claim.abandon()  # stopping before it was acknowledged: no commit

    def _publish(
        self,
        outcome: Outcome,
        record: InboundRecord,
        error: SinkError,
        states: tuple[Outgoing, ...],
    ) -> bool:
        """After ``error``, publish until acked; False when stopping first (no commit then).

        Only the records the broker did not acknowledge are sent again, changed as
        ``resend.after_failure`` says; a dead letter shrunk is sent again at once, so an
        oversize request never stalls its partition.
        """
        while True:
            log.warning("publish_failed", error=str(error))
            before = states
            states, at_once = after_failure(states, error)
            self._report_changes(before, states, outcome)
            if not at_once and self._stop.wait(PUBLISH_RETRY_DELAY):
                return False
            if not pending(states):
                return True
            try:
                self._sink.publish(self.records(outcome, record, states))
                return True
            except SinkError as exc:
                error = exc

    def _report_changes(
        self, before: tuple[Outgoing, ...], after: tuple[Outgoing, ...], outcome: Outcome
    ) -> None:
        """Log and count what re-sending changed: a redirected reply, a shrunk dead letter."""
        for old, new in zip(before, after, strict=True):
            if new.redirected and not old.redirected:
                refused = outcome.reply_topic or self._reply_topic
                log.warning("reply_topic_refused", reply_topic=refused, sent_to=self._reply_topic)
                self._metrics.count_reply_topic_refused()
                self._refused_until[refused] = time.monotonic() + REFUSED_TOPIC_MEMORY
            if new.omit > old.omit:
                log.warning("dead_letter_shrunk", omitted=new.omit.name.lower())

    def _done(self, answer: _Answer) -> None:
        """The answer is acked: let the offset be committed, then tell the observers once."""
        crash_here("after_reply", self._crash_at)  # acked, not committed
        answer.claim.done()
        notify(self._observers, answer.record, answer.outcome, answer.timing)


@dataclass(frozen=True, slots=True)
class _Answer:
    """One request's answer in flight: what it answers, with what, and whose offset it ends."""

    record: InboundRecord
    outcome: Outcome
    claim: Claim
    timing: Timing


def _route_header(route: str) -> tuple[str, bytes]:
    return (ROUTE_HEADER, route.encode("utf-8"))
