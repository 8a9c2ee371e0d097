"""RecordSink against the real broker: what a Delivery says once the broker answered."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kafka.errors import KafkaTimeoutError, NoBrokersAvailable

from consumer.errors import SinkError
from consumer.kafka_io.sink import MAX_REQUEST_SIZE, Delivery, RecordSink
from consumer.record import OutboundRecord
from tests.conftest import KafkaCluster
from tests.faults.delay_proxy import DelayProxy
from tests.scenarios.harness import read_all
from tests.waiting import wait_until


@pytest.fixture
def sink(kafka: KafkaCluster) -> Iterator[RecordSink]:
    """A sink on the test broker."""
    made = RecordSink({"bootstrap_servers": kafka.bootstrap_servers}, client_id="test-sink")
    try:
        yield made
    finally:
        made.close()


def _record(topic: str, value: bytes) -> OutboundRecord:
    return OutboundRecord(topic=topic, key=b"k", value=value, headers=(("h", b"1"),))


def test_on_settled_reports_every_record_acked(
    sink: RecordSink, kafka: KafkaCluster, new_topic: Callable[..., str]
) -> None:
    """Both records acked: the callback gets None once, and the records are on the topic."""
    topic = new_topic()
    answers: list[SinkError | None] = []
    settled = threading.Event()

    def on_settled(error: SinkError | None) -> None:
        answers.append(error)
        settled.set()

    sink.send([_record(topic, b"one"), _record(topic, b"two")]).on_settled(on_settled)
    assert settled.wait(60)
    assert answers == [None]
    values = [r.value for r in read_all(kafka.bootstrap_servers, topic, at_least=2)]
    assert values == [b"one", b"two"]


def test_too_large_for_the_client_is_named_not_raised(
    sink: RecordSink, new_topic: Callable[..., str]
) -> None:
    """A record over the producer's own bound is refused before sending: unacked, too large."""
    topic = new_topic()
    delivery = sink.send([_record(topic, b"ok"), _record(topic, b"x" * (MAX_REQUEST_SIZE + 1))])
    error = delivery.wait(60)
    assert error is not None
    assert error.unacked == (1,)
    assert error.too_large == frozenset({1})


def test_too_large_for_the_topic_is_named(sink: RecordSink, new_topic: Callable[..., str]) -> None:
    """A record over its topic's max.message.bytes is refused by the broker; the other is acked."""
    # another topic: kafka-python refuses a whole batch, and does not split it as Java does
    small_limit = new_topic(config={"max.message.bytes": "2000"})
    error = sink.send([_record(small_limit, b"x" * 10_000), _record(new_topic(), b"ok")]).wait(60)
    assert error is not None
    assert error.unacked == (0,)
    assert error.too_large == frozenset({0})
    assert "MessageSizeTooLargeError" in str(error)


def test_publish_raises_what_send_reports(sink: RecordSink, new_topic: Callable[..., str]) -> None:
    """The blocking publish raises the same SinkError a Delivery settles with."""
    topic = new_topic()
    with pytest.raises(SinkError) as raised:
        sink.publish([_record(topic, b"x" * (MAX_REQUEST_SIZE + 1))])
    assert raised.value.unacked == (0,)


def test_a_record_the_producer_refuses_settles_as_unsendable(
    sink: RecordSink, new_topic: Callable[..., str]
) -> None:
    """kafka-python's AssertionError for neither key nor value settles the record, never raises."""
    topic = new_topic()
    delivery = sink.send(
        [OutboundRecord(topic, None, None, ()), OutboundRecord(topic, b"k", b"v", ())]
    )
    error = delivery.wait(30)
    assert error is not None
    assert error.unacked == (0,)
    assert error.unsendable == frozenset({0})


def test_a_metadata_timeout_is_a_topic_refusal_only_if_the_broker_answered_meanwhile() -> None:
    """No metadata in time during an outage keeps the reply's topic; a missing topic does not.

    A timeout counted as a refusal sent replies of valid reply topics to the default one
    after ~30 s of a broker outage (adversarial review).
    """
    timeout = KafkaTimeoutError("Failed to update metadata after 5.0 secs.")
    outage = Delivery([timeout], sent_at=0.0, answered_since=lambda _since: False).wait(1)
    missing = Delivery([timeout], sent_at=0.0, answered_since=lambda _since: True).wait(1)
    assert outage is not None and missing is not None
    assert outage.topic_refused == frozenset()
    assert missing.topic_refused == frozenset({0})


def test_the_sink_learns_when_the_broker_answers_metadata(
    sink: RecordSink, new_topic: Callable[..., str]
) -> None:
    """A publish makes the broker answer metadata: answered since before it, not since after."""
    before = time.monotonic()
    sink.publish([OutboundRecord(new_topic(), b"k", b"v", ())])
    assert sink._answered_since(before)
    assert not sink._answered_since(time.monotonic() + 1)


# kafka-python leaves each producer it could not finish making half-built: their sockets are
# closed by __del__, which raises; collected here (gc.collect) rather than in a later test
HALF_BUILT = "ignore::pytest.PytestUnraisableExceptionWarning"
# a sink made in a process of its own: its half-built producers die with that process
MAKE_SINK = (
    "import sys\n"
    "from consumer.kafka_io.sink import RecordSink\n"
    "where = {'bootstrap_servers': sys.argv[1]}\n"
    "sink = RecordSink(where, client_id='t', start_delays=[0.2] * 300)\n"
    "sink.close()\n"
    "print('sink ready', flush=True)\n"
)


def test_a_sink_made_while_no_broker_answers_waits_for_one(kafka: KafkaCluster) -> None:
    """Nemesis seed 1415: the worker exited when it started while the broker was away.

    The broker's address swallows every byte (a paused broker) while the sink is made; once
    it answers again the sink is ready, having waited instead of raising.
    """
    host, port = kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    with DelayProxy((host, int(port))) as proxy:
        proxy.blackhole()
        maker = subprocess.Popen(
            [sys.executable, "-c", MAKE_SINK, f"127.0.0.1:{proxy.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(maker.stdout or []), daemon=True)
        reader.start()
        try:
            wait_until(
                lambda: sum("kafka_unreachable_at_start" in line for line in lines) >= 2,
                timeout=60,
                what="the sink waiting for a broker twice",
            )
            assert maker.poll() is None  # waiting, not failed
            proxy.restore()
            assert maker.wait(timeout=90) == 0
        finally:
            maker.kill()
            reader.join(timeout=10)
            if maker.stdout is not None:
                maker.stdout.close()
            maker.wait(timeout=10)
    assert any("sink ready" in line for line in lines)


def test_a_broker_that_answers_again_mid_probe_is_not_taken_for_kafka_0_9(
    kafka: KafkaCluster,
) -> None:
    """A broker answering again mid-probe is not taken for Kafka 0.9 (nemesis seed 1313).

    A replica exited with "Transactional/Idempotent producer requires >= Kafka 0.11
    Brokers": kafka-python asks a broker its version with ApiVersions; when that goes unanswered (a
    paused broker) it falls back to probes of 0.x requests, and a broker that answers again
    then is taken for Kafka 0.9. Here the broker answers again while those probes run.
    """
    host, port = kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    with DelayProxy((host, int(port))) as proxy:
        proxy.blackhole()
        maker = subprocess.Popen(
            [sys.executable, "-c", MAKE_SINK, f"127.0.0.1:{proxy.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            time.sleep(3.0)  # the fault's timing: kafka-python's ApiVersions gave up at 2 s
            proxy.restore()
            out, _ = maker.communicate(timeout=120)
        finally:
            maker.kill()
            maker.wait(timeout=10)
    assert maker.returncode == 0, out[-2000:]
    assert "sink ready" in out


@pytest.mark.filterwarnings(HALF_BUILT)
def test_a_sink_gives_up_only_when_its_start_delays_run_out() -> None:
    """With a bounded wait, no broker at all ends in ``NoBrokersAvailable``."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again before the sink tries it
    with pytest.raises(NoBrokersAvailable):
        RecordSink({"bootstrap_servers": f"127.0.0.1:{port}"}, client_id="t", start_delays=[0.1])
    gc.collect()
