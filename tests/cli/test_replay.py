"""`trigger-consumer replay` against the real broker: what lands on which topic, exactly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.conftest import KafkaCluster
from tests.scenarios.harness import end_offsets, produce, read_all

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000
ORIGINAL_HEADERS = [("correlation-id", b"corr-1"), ("trace", b"\xff\x00bin")]


@dataclass(frozen=True)
class Sample:
    """One record written to the DLQ-like source topic."""

    partition: int
    key: bytes | None
    value: bytes
    code: str | None
    timestamp_ms: int
    origin: str = "dag-trigger-requests"

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The original headers plus, for a dead-lettered record, the worker's five."""
        if self.code is None:
            return list(ORIGINAL_HEADERS)
        return [*ORIGINAL_HEADERS, *dead_letter_headers(self.code, self.origin)]


def dead_letter_headers(code: str, origin: str | None) -> list[tuple[str, bytes]]:
    """The headers the worker adds when dead-lettering (``source-topic`` only with ``origin``)."""
    added = [("error-code", code.encode()), ("error-message", f"failed: {code}".encode())]
    if origin is not None:
        added.append(("source-topic", origin.encode()))
    return [*added, ("source-partition", b"0"), ("source-offset", b"17")]


def request(key: str, dag_id: str) -> bytes:
    """A request value as a producer writes it."""
    return json.dumps({"idempotency_key": key, "dag_id": dag_id}).encode()


def samples(base_ms: int, origin: str) -> list[Sample]:
    """Six records on partition 0, one hour apart from ``base_ms``, and two on partition 1.

    The dead-lettered ones came from ``origin``; the one without an ``error-code`` has no
    ``source-topic`` header either.
    """
    return [
        Sample(0, b"k0", request("k0", "etl"), "dag_not_found", base_ms, origin),
        Sample(0, b"k1", request("k1", "report"), "airflow_unavailable", base_ms + HOUR_MS, origin),
        Sample(0, b"k2", b"{not json", "invalid_json", base_ms + 2 * HOUR_MS, origin),
        Sample(0, None, request("k3", "etl"), "airflow_unavailable", base_ms + 3 * HOUR_MS, origin),
        Sample(0, b"k4", request("k4", "etl"), None, base_ms + 4 * HOUR_MS, origin),
        Sample(
            0,
            b"\x00k5\xff",
            request("k5", "report"),
            "dag_not_found",
            base_ms + 5 * HOUR_MS,
            origin,
        ),
        Sample(1, b"p1-0", request("p1-0", "etl"), "dag_not_found", base_ms, origin),
        Sample(1, b"p1-1", request("p1-1", "etl"), "invalid_json", base_ms + HOUR_MS, origin),
    ]


@dataclass(frozen=True)
class Setup:
    """A filled source topic and an empty target topic."""

    bootstrap: str
    source: str
    target: str
    written: list[Sample]
    base_ms: int

    def offset_of(self, sample: Sample) -> int:
        """The offset ``sample`` got in its partition."""
        same = [s for s in self.written if s.partition == sample.partition]
        return same.index(sample)

    def cli(
        self, *flags: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``replay`` with the topics given as flags."""
        return run_cli(
            "--from-topic", self.source, "--to-topic", self.target, *flags, env=env or self.env()
        )

    def env(self, **settings: str) -> dict[str, str]:
        """The child's environment: no inherited settings, only the broker (and ``settings``)."""
        return cli_env(self.bootstrap, **settings)

    def expect_replayed(self, selected: Iterable[Sample]) -> None:
        """The target holds exactly the replays of ``selected``, byte for byte."""
        wanted = [
            (
                sample.key,
                sample.value,
                [
                    *ORIGINAL_HEADERS,
                    (
                        "replayed-from",
                        f"{self.source}/{sample.partition}/{self.offset_of(sample)}".encode(),
                    ),
                ],
            )
            for sample in selected
        ]
        records = read_all(self.bootstrap, self.target, at_least=len(wanted), timeout=30)
        got = [(record.key, record.value, list(record.headers)) for record in records]
        # keys may be None, so records are ordered by their representation
        got.sort(key=repr)
        wanted.sort(key=repr)
        assert got == wanted
        assert sum(end_offsets(self.bootstrap, self.target).values()) == len(wanted)


def cli_env(bootstrap: str, **settings: str) -> dict[str, str]:
    """``os.environ`` without ``TRIGGER_CONSUMER_*``, plus the bootstrap servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_CONSUMER_")}
    env["TRIGGER_CONSUMER_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env.update({f"TRIGGER_CONSUMER_{name.upper()}": value for name, value in settings.items()})
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m consumer replay ARGS`` with a timeout."""
    return subprocess.run(
        [sys.executable, "-m", "consumer", "replay", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def write(bootstrap: str, topic: str, records: Iterable[Sample]) -> None:
    """Write the samples in order, with their timestamps, and wait for the acks."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for sample in records:
            producer.send(
                topic,
                partition=sample.partition,
                key=sample.key,
                value=sample.value,
                headers=sample.headers,
                timestamp_ms=sample.timestamp_ms,
            ).get(timeout=60)
    finally:
        producer.close()


@pytest.fixture
def setup(kafka: KafkaCluster, new_topic: Callable[..., str]) -> Setup:
    """A two-partition DLQ-like topic holding ``samples`` and an empty one-partition target."""
    # recent timestamps: far older ones could be deleted by the broker's time retention
    base_ms = int(time.time() * 1000) - 21 * HOUR_MS // 2
    source = new_topic(partitions=2, prefix="replay-dlq")
    target = new_topic(partitions=1, prefix="replay-requests")
    written = samples(base_ms, origin=target)
    write(kafka.bootstrap_servers, source, written)
    return Setup(kafka.bootstrap_servers, source, target, written, base_ms)


def rfc3339(epoch_ms: int) -> str:
    """An RFC 3339 timestamp (UTC, ``Z``) of epoch milliseconds."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def summary(result: subprocess.CompletedProcess[str]) -> str:
    """The last stderr line: the summary."""
    return result.stderr.strip().splitlines()[-1]


def test_offset_range_replays_exactly_those_records(setup: Setup) -> None:
    """Offsets [1, 4) of partition 0 are replayed: key, value, headers byte for byte."""
    result = setup.cli("--partition", "0", "--from-offset", "1", "--to-offset", "4")
    assert result.returncode == 0, result.stderr
    setup.expect_replayed(setup.written[1:4])
    assert summary(result).endswith(
        f"read 3, matched 3, replayed 3; by topic: {setup.target}=3; "
        "by error-code: airflow_unavailable=2, invalid_json=1"
    )
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1  # nothing per message off a terminal


def test_offset_range_applies_to_every_partition(setup: Setup) -> None:
    """Without --partition, the offset range selects in each partition."""
    result = setup.cli("--from-offset", "1", "--to-offset", "2")
    assert result.returncode == 0, result.stderr
    setup.expect_replayed([setup.written[1], setup.written[7]])


def test_time_range_with_rfc3339_timestamps(setup: Setup) -> None:
    """--since is inclusive and --until exclusive, on the record timestamps."""
    result = setup.cli(
        "--since", rfc3339(setup.base_ms + HOUR_MS), "--until", rfc3339(setup.base_ms + 3 * HOUR_MS)
    )
    assert result.returncode == 0, result.stderr
    setup.expect_replayed([setup.written[1], setup.written[2], setup.written[7]])


def test_time_range_with_a_duration(setup: Setup) -> None:
    """--since 7h means seven hours ago: only the records written after that."""
    result = setup.cli("--since", "7h")
    assert result.returncode == 0, result.stderr
    # base is 10.5 h ago: offsets 4 (6.5 h ago) and 5 (5.5 h ago) of partition 0
    setup.expect_replayed(setup.written[4:6])


def test_error_code_filter_is_repeatable(setup: Setup) -> None:
    """Only records whose error-code header is one of the given codes are replayed."""
    result = setup.cli("--error-code", "invalid_json", "--error-code", "airflow_unavailable")
    assert result.returncode == 0, result.stderr
    setup.expect_replayed([setup.written[i] for i in (1, 2, 3, 7)])
    assert summary(result).endswith(
        f"read 8, matched 4, replayed 4; by topic: {setup.target}=4; "
        "by error-code: airflow_unavailable=2, invalid_json=2"
    )


def test_dag_filter_skips_unparseable_values(setup: Setup) -> None:
    """--dag matches the JSON dag_id; the value that is not JSON never matches."""
    result = setup.cli("--dag", "etl", "--partition", "0")
    assert result.returncode == 0, result.stderr
    setup.expect_replayed([setup.written[i] for i in (0, 3, 4)])
    assert "read 6, matched 3, replayed 3" in summary(result)


def test_limit_bounds_the_replay(setup: Setup) -> None:
    """--limit N replays the first N matched records of the partition."""
    result = setup.cli("--partition", "0", "--dag", "report", "--limit", "1", "--rate", "50")
    assert result.returncode == 0, result.stderr
    setup.expect_replayed([setup.written[1]])


def test_dry_run_lists_and_writes_nothing(setup: Setup) -> None:
    """--dry-run prints one JSON line per match and leaves the target topic empty."""
    result = setup.cli("--dry-run", "--partition", "0", "--error-code", "dag_not_found")
    assert result.returncode == 0, result.stderr
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert listed == [
        {
            "replayed_from": f"{setup.source}/0/0",
            "key": "k0",
            "error_code": "dag_not_found",
            "dag_id": "etl",
            "timestamp_ms": setup.base_ms,
            "source_topic": setup.target,
            "to_topic": setup.target,
            "skipped": None,
        },
        {
            "replayed_from": f"{setup.source}/0/5",
            "key": "\x00k5\\xff",
            "error_code": "dag_not_found",
            "dag_id": "report",
            "timestamp_ms": setup.base_ms + 5 * HOUR_MS,
            "source_topic": setup.target,
            "to_topic": setup.target,
            "skipped": None,
        },
    ]
    assert summary(result).endswith(
        f"read 6, matched 2, would replay 2; by topic: {setup.target}=2; "
        "by error-code: dag_not_found=2"
    )
    assert sum(end_offsets(setup.bootstrap, setup.target).values()) == 0


def test_defaults_read_the_dlq_topic_and_write_each_record_to_its_source_topic(
    setup: Setup,
) -> None:
    """Without --from-topic/--to-topic: the configured DLQ, back to the request topic."""
    env = setup.env(dlq_topic=setup.source, request_topic=setup.target)
    result = run_cli("--partition", "1", env=env)
    assert result.returncode == 0, result.stderr
    setup.expect_replayed(setup.written[6:])
    assert f"{setup.source} -> source topics: " in summary(result)
    assert f"replayed 2; by topic: {setup.target}=2" in summary(result)


def test_reading_stops_at_the_end_captured_at_start(setup: Setup) -> None:
    """Replaying a topic into itself terminates: records it writes are past the end it read to."""
    result = run_cli(
        "--from-topic",
        setup.source,
        "--to-topic",
        setup.source,
        "--partition",
        "1",
        env=setup.env(),
    )
    assert result.returncode == 0, result.stderr
    assert "read 2, matched 2, replayed 2" in summary(result)
    # the copies go where their keys hash to: count the whole topic
    assert sum(end_offsets(setup.bootstrap, setup.source).values()) == len(setup.written) + 2


def test_empty_selection_succeeds_without_writing(setup: Setup) -> None:
    """A range past the end replays nothing and exits 0 at once."""
    result = setup.cli("--from-offset", "100")
    assert result.returncode == 0, result.stderr
    assert summary(result).endswith("read 0, matched 0, replayed 0")
    assert sum(end_offsets(setup.bootstrap, setup.target).values()) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--from-offset", "1", "--since", "2h"], "offset range or a time range, not both"),
        (["--from-offset", "5", "--to-offset", "2"], "--to-offset must not be below --from-offset"),
        (["--since", "yesterday"], "not an RFC 3339 timestamp or a duration"),
        (["--since", "2025-01-01T00:00:00"], "needs a zone"),
        (["--since", "1h", "--until", "2h"], "--until must be later than --since"),
        (["--partition", "7"], "has no partition 7"),
        (["--rate", "0"], "must be a positive number"),
        (["--limit", "0"], "must be at least 1"),
        (["--from-offset", "-1"], "must not be negative"),
    ],
)
def test_bad_flags_exit_2_and_write_nothing(setup: Setup, flags: list[str], message: str) -> None:
    """Flags that do not make a selection are refused with exit 2, naming the problem."""
    result = setup.cli(*flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert sum(end_offsets(setup.bootstrap, setup.target).values()) == 0


def test_unknown_topic_exits_2_and_is_not_created(kafka: KafkaCluster, setup: Setup) -> None:
    """A source or target topic that does not exist is a usage error; replay creates no topic."""
    missing = f"{setup.source}-missing"
    for flags in (["--from-topic", missing], ["--to-topic", missing]):
        result = setup.cli(*flags)  # the later --from-topic/--to-topic wins
        assert result.returncode == 2
        assert f"topic {missing!r} does not exist" in result.stderr
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        assert missing not in consumer.topics()
    finally:
        consumer.close()


def test_bad_settings_exit_2() -> None:
    """An unknown TRIGGER_CONSUMER_ variable is refused before Kafka is contacted."""
    env = cli_env("127.0.0.1:1", dlq_topik="x")
    result = run_cli(env=env)
    assert result.returncode == 2
    assert "TRIGGER_CONSUMER_DLQ_TOPIK" in result.stderr


def test_unreachable_kafka_exits_3() -> None:
    """No broker at the bootstrap address: exit 3, saying Kafka is unreachable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket closes
    result = run_cli("--from-topic", "t", "--to-topic", "t", env=cli_env(f"127.0.0.1:{port}"))
    assert result.returncode == 3
    assert "Kafka unreachable" in result.stderr


# --- destinations: each record back to its source topic ----------------------------------


@dataclass(frozen=True)
class Mixed:
    """A DLQ holding a request, a route event, a record without source-topic and a stray.

    The configuration reads ``requests`` as the request topic and ``events`` through a
    route; ``gone`` is a source topic it no longer reads (and that does not exist).
    """

    bootstrap: str
    dlq: str
    requests: str
    events: str
    gone: str

    def env(self, **settings: str) -> dict[str, str]:
        """The worker's configuration: these topics and one route on ``events``."""
        route = {"name": "orders", "topics": [self.events], "dag_id": "etl"}
        return cli_env(
            self.bootstrap,
            dlq_topic=self.dlq,
            request_topic=self.requests,
            routes=json.dumps([route]),
            **settings,
        )

    def values(self, topic: str, at_least: int) -> list[bytes]:
        """The values on ``topic`` once it holds ``at_least``, sorted."""
        return sorted(r.value for r in read_all(self.bootstrap, topic, at_least=at_least))


EVENT = b'{"order_id": 7}'
STRAY = b'{"legacy": true}'
NO_ORIGIN = request("k-none", "etl")


@pytest.fixture
def mixed(kafka: KafkaCluster, new_topic: Callable[..., str]) -> Mixed:
    """The DLQ of ``Mixed``, written in this order: request, event, no origin, stray."""
    setup = Mixed(
        bootstrap=kafka.bootstrap_servers,
        dlq=new_topic(prefix="replay-mixed-dlq"),
        requests=new_topic(prefix="replay-mixed-requests"),
        events=new_topic(prefix="replay-mixed-events"),
        gone=f"replay-gone-{time.time_ns()}",
    )
    produce(
        setup.bootstrap,
        setup.dlq,
        [
            (
                b"k-req",
                request("k-req", "etl"),
                dead_letter_headers("dag_not_found", setup.requests),
            ),
            (None, EVENT, dead_letter_headers("dag_not_allowed", setup.events)),
            (b"k-none", NO_ORIGIN, dead_letter_headers("airflow_unavailable", None)),
            (None, STRAY, dead_letter_headers("dag_not_found", setup.gone)),
        ],
    )
    return setup


def test_each_record_goes_back_to_its_source_topic(mixed: Mixed) -> None:
    """Request → request topic, route event → its route topic, no header → request topic.

    A source topic the configuration does not read is skipped, named, and not created.
    """
    result = run_cli(env=mixed.env())
    assert result.returncode == 0, result.stderr
    assert mixed.values(mixed.requests, at_least=2) == sorted([request("k-req", "etl"), NO_ORIGIN])
    assert mixed.values(mixed.events, at_least=1) == [EVENT]
    assert sum(end_offsets(mixed.bootstrap, mixed.requests).values()) == 2
    assert sum(end_offsets(mixed.bootstrap, mixed.events).values()) == 1
    assert summary(result) == (
        f"trigger-consumer replay {mixed.dlq} -> source topics: read 4, matched 4, replayed 3; "
        f"by topic: {mixed.events}=1, {mixed.requests}=2; by error-code: airflow_unavailable=1, "
        "dag_not_allowed=1, dag_not_found=2; 1 without a source-topic header: to the request "
        f"topic; 1 skipped, source topic not read by this configuration ({mixed.gone}=1): "
        "--to-topic replays them anyway"
    )
    notes = result.stderr.strip().splitlines()[:-1]
    assert notes == [
        f"trigger-consumer: skipped 1 record(s) from topic {mixed.gone!r}: this configuration "
        "reads it neither as the request topic nor through a route, so nothing would read them "
        "there; --to-topic TOPIC replays them to TOPIC",
        "trigger-consumer: 1 record(s) without a source-topic header went to the request topic "
        f"{mixed.requests!r}",
    ]
    consumer = KafkaConsumer(bootstrap_servers=mixed.bootstrap)
    try:
        assert mixed.gone not in consumer.topics()
    finally:
        consumer.close()


def test_to_topic_overrides_every_source_topic(mixed: Mixed, new_topic: Callable[..., str]) -> None:
    """--to-topic sends every record there, a source topic nobody reads included."""
    target = new_topic(prefix="replay-mixed-target")
    result = run_cli("--to-topic", target, env=mixed.env())
    assert result.returncode == 0, result.stderr
    assert mixed.values(target, at_least=4) == sorted(
        [request("k-req", "etl"), EVENT, NO_ORIGIN, STRAY]
    )
    assert f"{mixed.dlq} -> {target}: read 4, matched 4, replayed 4; by topic: {target}=4;" in (
        summary(result)
    )
    assert "skipped" not in result.stderr
    for topic in (mixed.requests, mixed.events):
        assert sum(end_offsets(mixed.bootstrap, topic).values()) == 0


def test_dry_run_counts_per_destination_topic(mixed: Mixed) -> None:
    """--dry-run lists where each record would go (or why not) and counts per topic."""
    result = run_cli("--dry-run", env=mixed.env())
    assert result.returncode == 0, result.stderr
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["source_topic"], r["to_topic"], r["skipped"]) for r in listed] == [
        (mixed.requests, mixed.requests, None),
        (mixed.events, mixed.events, None),
        (None, mixed.requests, None),
        (mixed.gone, None, "source_topic_not_read"),
    ]
    assert (
        f"read 4, matched 4, would replay 3; by topic: {mixed.events}=1, {mixed.requests}=2;"
        in summary(result)
    )
    assert "without a source-topic header would go to the request topic" in result.stderr
    for topic in (mixed.requests, mixed.events):
        assert sum(end_offsets(mixed.bootstrap, topic).values()) == 0


def test_a_configured_topic_missing_on_the_broker_is_skipped_not_created(mixed: Mixed) -> None:
    """A route topic in the configuration that the broker lacks gets nothing; the rest replays."""
    missing = f"{mixed.events}-missing"
    route = {"name": "orders", "topics": [missing], "dag_id": "etl"}
    env = mixed.env()
    env["TRIGGER_CONSUMER_ROUTES"] = json.dumps([route])
    produce(
        mixed.bootstrap, mixed.dlq, [(None, EVENT, dead_letter_headers("dag_not_found", missing))]
    )
    result = run_cli("--error-code", "dag_not_found", env=env)
    assert result.returncode == 0, result.stderr
    assert mixed.values(mixed.requests, at_least=1) == [request("k-req", "etl")]
    assert f"replayed 1; by topic: {mixed.requests}=1;" in summary(result)
    assert f"1 skipped, topic does not exist ({missing}=1)" in summary(result)
    assert f"skipped 1 record(s) for topic {missing!r}: it does not exist" in result.stderr
    consumer = KafkaConsumer(bootstrap_servers=mixed.bootstrap)
    try:
        assert missing not in consumer.topics()
    finally:
        consumer.close()
