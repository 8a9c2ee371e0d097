"""Hostile input through one real worker: every message is rejected, dead-lettered and committed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from consumer.pipeline.dead_letter import KEY_NULL_HEADER, KEY_OMITTED_HEADER
from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Headers,
    Topics,
    WorkerProcess,
    committed,
    end_offsets,
    read_all,
    request,
    running,
)
from tests.waiting import wait_until

MIB = 1024 * 1024
TOPIC_MAX_MESSAGE_BYTES = 10 * MIB  # the broker's default (~1 MiB) refuses the big values
PRODUCER_MAX_REQUEST_BYTES = 16 * MIB
REQUEST_PARTITIONS = 3
NESTING = 100_000
PEAK_RSS_BOUND_KIB = 400 * 1024  # measured ~120 MiB (VmHWM) for the whole corpus


@dataclass(frozen=True)
class Case:
    """One hostile record and the error code its reply must carry."""

    name: str
    value: bytes | None
    code: str
    null_key: bool = False
    headers: Headers = field(default_factory=list)

    @property
    def key(self) -> bytes | None:
        """The Kafka key the case is produced with: its name, or None."""
        return None if self.null_key else self.name.encode()


def _with(member: bytes) -> bytes:
    """A request (fresh key, allowed DAG) with one more member: ``"name":value`` bytes."""
    head = json.dumps({"idempotency_key": unique_name("hostile"), "dag_id": "devstack_paused"})
    return head[:-1].encode() + b"," + member + b"}"


def _deep(opening: bytes, closing: bytes, inner: bytes = b"") -> bytes:
    return opening * NESTING + inner + closing * NESTING


def _forbidden_dag() -> bytes:
    return json.dumps({"idempotency_key": unique_name("deny"), "dag_id": "forbidden"}).encode()


def _corpus() -> list[Case]:
    """The hostile records; each code follows decode.py, validate.py and the README table."""
    deep_array = _deep(b"[", b"]")
    deep_object = _deep(b'{"a":', b"}", b"1")
    key_only = b'{"idempotency_key":"%s","dag_id":"devstack_paused"}'
    return [
        Case("deep-array-top-level", deep_array, "not_an_object"),
        Case("deep-object-top-level", deep_object, "unknown_fields"),
        Case("deep-array-unknown-field", _with(b'"extra":' + deep_array), "unknown_fields"),
        Case("deep-object-unknown-field", _with(b'"extra":' + deep_object), "unknown_fields"),
        Case("deep-array-in-conf", _with(b'"conf":{"a":' + deep_array + b"}"), "conf_too_large"),
        Case("deep-object-conf", _with(b'"conf":' + deep_object), "conf_too_large"),
        Case("deep-array-note", _with(b'"note":' + deep_array), "schema_violation"),
        Case("just-over-1mib", b'{"a":"' + b"x" * (MIB - 7) + b'"}', "message_too_large"),
        Case("five-mb", b'{"a":"' + b"x" * 5_000_000 + b'"}', "message_too_large"),
        Case("huge-int-in-conf", _with(b'"conf":{"n":' + b"9" * 5000 + b"}"), "invalid_json"),
        Case("huge-int-top-level", b"7" * 5000, "invalid_json"),
        Case("float-overflow", _with(b'"conf":{"n":1' + b"0" * 290 + b"e20}"), "invalid_json"),
        Case(
            "giant-string-conf", _with(b'"conf":{"s":"' + b"x" * 900_000 + b'"}'), "conf_too_large"
        ),
        Case("giant-string-note", _with(b'"note":"' + b"x" * 900_000 + b'"'), "schema_violation"),
        Case("nan", _with(b'"conf":{"v":NaN}'), "invalid_json"),
        Case("infinity", _with(b'"conf":{"v":Infinity}'), "invalid_json"),
        Case("minus-infinity", _with(b'"conf":{"v":-Infinity}'), "invalid_json"),
        Case("duplicate-top-key", _with(b'"dag_id":"devstack_plain"'), "schema_violation"),
        Case("duplicate-conf-key", _with(b'"conf":{"a":1,"a":2}'), "schema_violation"),
        Case("lone-surrogate-key", key_only % b"\\ud800", "invalid_encoding"),
        Case("lone-surrogate-conf", _with(b'"conf":{"s":"\\ud800"}'), "invalid_encoding"),
        Case("utf8-bom", b"\xef\xbb\xbf" + _forbidden_dag(), "invalid_json"),
        Case("raw-nul-in-string", _with(b'"note":"a\x00b"'), "invalid_json"),
        Case("escaped-nul-in-key", key_only % b"a\\u0000b", "schema_violation"),
        Case("raw-nul-value", b"\x00", "invalid_json"),
        Case("nul-after-object", _forbidden_dag() + b"\x00", "invalid_json"),
        Case("escaped-control-field-name", _with(b'"\\u0001dag_id":"x"'), "unknown_fields"),
        Case("raw-control-field-name", _with(b'"\x01dag_id":"x"'), "invalid_json"),
        Case("json-array", b"[1, 2]", "not_an_object"),
        Case("json-number", b"42", "not_an_object"),
        Case("json-string", b'"a string"', "not_an_object"),
        Case("json-null", b"null", "not_an_object"),
        Case("json-true", b"true", "not_an_object"),
        Case("invalid-utf8-in-string", key_only % b"\xc3\x28", "invalid_encoding"),
        Case("invalid-utf8-raw", b"\xff\xfe\xfd", "invalid_encoding"),
        Case("empty-value", b"", "invalid_json"),
        Case("tombstone", None, "invalid_json"),
        Case("null-key", _forbidden_dag(), "dag_not_allowed", null_key=True),
        Case(
            "binary-headers",
            _forbidden_dag(),
            "dag_not_allowed",
            headers=[("correlation-id", b"\xff\xfe\x00"), ("blob", b"\xab" * 64 * 1024)],
        ),
    ]


def _large_topic(
    bootstrap: str, prefix: str, partitions: int, max_bytes: int = TOPIC_MAX_MESSAGE_BYTES
) -> str:
    """Create a topic whose records may be up to ``max_bytes``."""
    name = unique_name(prefix)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        config = {"max.message.bytes": str(max_bytes)}
        admin.create_topics(
            [NewTopic(name, partitions, replication_factor=1, topic_configs=config)]
        )
        wait_until(
            lambda: len(admin.describe_topics([name])[0]["partitions"]) == partitions,
            timeout=30,
            what=f"topic {name}",
        )
    finally:
        admin.close()
    return name


def _produce(bootstrap: str, topic: str, cases: list[Case]) -> dict[tuple[int, int], Case]:
    """Write every case and return them by (partition, offset)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
    )
    try:
        futures = [
            (
                case,
                producer.send(topic, key=case.key, value=case.value, headers=case.headers),
            )
            for case in cases
        ]
        placed = {}
        for case, future in futures:
            metadata = future.get(timeout=120)
            placed[(metadata.partition, metadata.offset)] = case
        return placed
    finally:
        producer.close()


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@dataclass(frozen=True)
class Run:
    """What one worker did with a corpus."""

    requests_topic: str
    placed: dict[tuple[int, int], Case]
    replies: list[Any]
    dead: list[Any]
    events: list[dict[str, Any]]
    peak_rss_kib: int


def _run(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    cases: list[Case],
    *,
    timeout: float,
    dlq_max_message_bytes: int = TOPIC_MAX_MESSAGE_BYTES,
) -> Run:
    """Produce ``cases``, let one worker answer all of them, check it committed and lives on."""
    bootstrap = kafka.bootstrap_servers
    requests_topic = _large_topic(bootstrap, "hostile-requests", REQUEST_PARTITIONS)
    dlq_topic = _large_topic(bootstrap, "hostile-dlq", 1, dlq_max_message_bytes)
    placed = _produce(bootstrap, requests_topic, cases)
    worker = make_worker(request_topic=requests_topic, dlq_topic=dlq_topic)
    with running(worker):
        dead = read_all(bootstrap, dlq_topic, at_least=len(cases), timeout=timeout)
        # an empty partition has nothing to commit
        ends = {p: end for p, end in end_offsets(bootstrap, requests_topic).items() if end}
        wait_until(
            lambda: committed(bootstrap, topics.group, requests_topic) == ends,
            timeout=timeout,
            what="every request partition committed to its end",
        )
        replies = read_all(bootstrap, topics.replies, at_least=len(cases), timeout=timeout)
        assert worker.process is not None
        assert worker.process.poll() is None, worker.tail()
        peak_rss_kib = _peak_rss_kib(worker.process.pid)
        assert worker.terminate() == 0, worker.tail()
    return Run(requests_topic, placed, replies, dead, worker.events(), peak_rss_kib)


def _assert_each_rejected_once_and_dead_lettered(run: Run, *, exact: bool = True) -> None:
    """One rejected reply with the case's code and one DLQ copy per case (exact by default)."""
    answers: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for record in run.replies:
        reply = json.loads(record.value)
        answers.setdefault((reply["source"]["partition"], reply["source"]["offset"]), []).append(
            reply
        )
    copies: dict[tuple[int, int], list[Any]] = {}
    for record in run.dead:
        headers = dict(record.headers)
        source = (int(headers["source-partition"]), int(headers["source-offset"]))
        copies.setdefault(source, []).append(record)

    got = {
        case.name: [(reply["status"], reply["error"]["code"]) for reply in answers.get(source, [])]
        for source, case in run.placed.items()
    }
    assert got == {case.name: [("rejected", case.code)] for case in run.placed.values()}
    assert len(run.replies) == len(run.dead) == len(run.placed)
    for source, case in run.placed.items():
        (reply,) = answers[source]
        if case.name == "binary-headers":  # a correlation-id that is not UTF-8 is not echoed
            assert reply["correlation_id"] == reply["idempotency_key"], case.name
        (copy,) = copies[source]
        assert copy.key == case.key, case.name
        headers = dict(copy.headers)
        assert headers["error-code"] == case.code.encode(), case.name
        assert headers["source-topic"] == run.requests_topic.encode(), case.name
        if exact:
            assert copy.value == case.value, case.name  # the tombstone's copy is a tombstone too
            assert copy.headers[: len(case.headers)] == case.headers, case.name
    if exact:
        boundary = {"internal_error", "publish_failed"}
        assert [e for e in run.events if e.get("event") in boundary] == []


def test_hostile_corpus_is_rejected_dead_lettered_and_committed(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Each hostile record gets one rejected reply with its code and one exact DLQ copy.

    Afterwards every partition is committed to its end, no message hit the internal-error
    boundary or a publish failure, the worker is still running and exits 0 on SIGTERM, and
    its peak RSS (VmHWM) stayed under 400 MiB: measured about 120 MiB with the 5 MB and
    900 KB records in the corpus, so the bound leaves a 3x margin for slow, loaded machines.
    """
    run = _run(kafka, topics, make_worker, _corpus(), timeout=60)
    _assert_each_rejected_once_and_dead_lettered(run)
    assert run.peak_rss_kib < PEAK_RSS_BOUND_KIB, f"peak RSS {run.peak_rss_kib} KiB"


TEN_MB = b'{"a":"' + b"x" * 10_000_000 + b'"}'
TRACE = [("trace", b"big-one")]


def test_ten_megabyte_value_is_rejected_dead_lettered_exactly_and_committed(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """A 10 MB value, where the request and dead-letter topics accept 10 MiB: an exact copy."""
    ten_mb = Case("ten-mb", TEN_MB, "message_too_large", headers=TRACE)
    run = _run(kafka, topics, make_worker, [ten_mb], timeout=60)
    _assert_each_rejected_once_and_dead_lettered(run)


@pytest.mark.parametrize(
    ("dlq_max_bytes", "value", "headers", "omitted"),
    [
        # the broker's default limit (~1 MiB): the copy goes without its value
        (1_048_588, TEN_MB, TRACE, "value"),
        # a 100 KB limit under a 300 KB header: without the original headers too
        (100_000, b"y" * 2_000_000, [("blob", b"\xab" * 300_000)], "value_and_headers"),
    ],
    ids=["value-omitted", "value-and-headers-omitted"],
)
def test_copy_too_large_for_the_dead_letter_topic_is_shrunk_not_stalled(
    kafka: KafkaCluster,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    *,
    dlq_max_bytes: int,
    value: bytes,
    headers: Headers,
    omitted: str,
) -> None:
    """The DLQ refuses the full copy: it is sent again smaller, and the partition commits.

    The smaller copy keeps the key and the error/source headers, and says what it left
    out (the value's size and SHA-256, the count of headers), so the original can be
    found at its source offset; the reply is the usual ``message_too_large`` rejection.
    """
    case = Case("too-large-for-dlq", value, "message_too_large", headers=headers)
    run = _run(
        kafka,
        topics,
        make_worker,
        [case],
        timeout=60,
        dlq_max_message_bytes=dlq_max_bytes,
    )

    _assert_each_rejected_once_and_dead_lettered(run, exact=False)
    (copy,) = run.dead
    assert copy.value == b""
    added = dict(copy.headers)
    assert added["value-omitted-bytes"] == str(len(value)).encode()
    assert added["value-sha256"] == hashlib.sha256(value).hexdigest().encode()
    if omitted == "value":
        assert copy.headers[: len(headers)] == headers
        assert "headers-omitted" not in added
    else:
        assert added["headers-omitted"] == str(len(headers)).encode()
        assert not [name for name, _ in copy.headers if name == "blob"]
    shrunk = [e["omitted"] for e in run.events if e.get("event") == "dead_letter_shrunk"]
    assert shrunk[-1] == omitted
    assert [e for e in run.events if e.get("event") == "internal_error"] == []


def test_a_keyless_tombstone_is_rejected_dead_lettered_and_committed_past(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """A record with neither key nor value among requests: rejected once, nothing blocked.

    librdkafka and Java producers write such records (a Debezium-style tombstone); its dead
    letter used to make kafka-python's ``send`` raise, leaving its offset unfinished, so
    nothing after it was ever committed.
    """
    bootstrap = kafka.bootstrap_servers
    keys = [unique_name("around") for _ in range(20)]
    producer = Producer({"bootstrap.servers": bootstrap})
    for index, key in enumerate(keys):
        producer.produce(topics.requests, key=key.encode(), value=request(key), partition=0)
        if index == 9:
            producer.produce(topics.requests, key=None, value=None, partition=0)
    assert producer.flush(30) == 0
    worker = make_worker()
    with running(worker):
        replies = read_all(bootstrap, topics.replies, at_least=len(keys) + 1)
        ends = {p: end for p, end in end_offsets(bootstrap, topics.requests).items() if end}
        wait_until(
            lambda: committed(bootstrap, topics.group, topics.requests) == ends,
            timeout=60,
            what="the request partition committed to its end",
        )
        (dead,) = read_all(bootstrap, topics.dlq, at_least=1)
    answers = [json.loads(record.value) for record in replies]
    tombstone = [a for a in answers if a["idempotency_key"] is None]
    assert [(a["status"], a["error"]["code"]) for a in tombstone] == [("rejected", "invalid_json")]
    assert tombstone[0]["source"]["offset"] == 10
    assert sorted(a["idempotency_key"] for a in answers if a["status"] == "triggered") == sorted(
        keys
    )
    headers = dict(dead.headers)
    assert dead.value is None
    assert headers["error-code"] == b"invalid_json"
    assert headers["source-offset"] == b"10"
    assert headers[KEY_NULL_HEADER] == b"true"
    boundary = {"internal_error", "publish_failed"}
    assert [e for e in worker.events() if e.get("event") in boundary] == []


def test_a_huge_compressed_key_is_answered_and_committed_past(
    kafka: KafkaCluster, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """A 2 MiB key that arrived gzip-compressed: answered, dead-lettered without it, committed.

    The broker's size limit applies to the compressed batch, so such a request gets in; its
    reply (keyed by it, the value being unreadable) and its dead letter, uncompressed, were
    refused as too large for ever, and nothing after it on its partition was committed.
    """
    bootstrap = kafka.bootstrap_servers
    huge = b"k" * (2 * MIB)
    after = unique_name("after-huge")
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, compression_type="gzip", max_request_size=64 * MIB
    )
    try:
        producer.send(topics.requests, key=huge, value=b"not json", partition=0).get(timeout=30)
        producer.send(topics.requests, key=after.encode(), value=request(after), partition=0).get(
            timeout=30
        )
    finally:
        producer.close()
    worker = make_worker()
    with running(worker):
        replies = read_all(bootstrap, topics.replies, at_least=2)
        wait_until(
            lambda: committed(bootstrap, topics.group, topics.requests).get(0) == 2,
            timeout=60,
            what="partition 0 committed past the huge key",
        )
        (dead,) = read_all(bootstrap, topics.dlq, at_least=1)
    answers = sorted(json.loads(r.value)["status"] for r in replies)
    assert answers == ["rejected", "triggered"]
    assert dead.key is None
    assert dict(dead.headers)[KEY_OMITTED_HEADER] == str(2 * MIB).encode()
    assert dict(dead.headers)["error-code"] == b"invalid_json"
