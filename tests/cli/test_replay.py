"""`trigger-consumer replay` against the real broker: what lands on the target topic, exactly."""

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
from tests.scenarios.harness import end_offsets, read_all

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

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The original headers plus, for a dead-lettered record, the worker's five."""
        if self.code is None:
            return list(ORIGINAL_HEADERS)
        return [
            *ORIGINAL_HEADERS,
            ("error-code", self.code.encode()),
            ("error-message", f"failed: {self.code}".encode()),
            ("source-topic", b"dag-trigger-requests"),
            ("source-partition", b"0"),
            ("source-offset", b"17"),
        ]


def request(key: str, dag_id: str) -> bytes:
    """A request value as a producer writes it."""
    return json.dumps({"idempotency_key": key, "dag_id": dag_id}).encode()


def samples(base_ms: int) -> list[Sample]:
    """Six records on partition 0, one hour apart from ``base_ms``, and two on partition 1."""
    return [
        Sample(0, b"k0", request("k0", "etl"), "dag_not_found", base_ms),
        Sample(0, b"k1", request("k1", "report"), "airflow_unavailable", base_ms + HOUR_MS),
        Sample(0, b"k2", b"{not json", "invalid_json", base_ms + 2 * HOUR_MS),
        Sample(0, None, request("k3", "etl"), "airflow_unavailable", base_ms + 3 * HOUR_MS),
        Sample(0, b"k4", request("k4", "etl"), None, base_ms + 4 * HOUR_MS),
        Sample(0, b"\x00k5\xff", request("k5", "report"), "dag_not_found", base_ms + 5 * HOUR_MS),
        Sample(1, b"p1-0", request("p1-0", "etl"), "dag_not_found", base_ms),
        Sample(1, b"p1-1", request("p1-1", "etl"), "invalid_json", base_ms + HOUR_MS),
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
    written = samples(base_ms)
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
        "read 3, matched 3, replayed 3; by error-code: airflow_unavailable=2, invalid_json=1"
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
        "read 8, matched 4, replayed 4; by error-code: airflow_unavailable=2, invalid_json=2"
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
        },
        {
            "replayed_from": f"{setup.source}/0/5",
            "key": "\x00k5\\xff",
            "error_code": "dag_not_found",
            "dag_id": "report",
            "timestamp_ms": setup.base_ms + 5 * HOUR_MS,
        },
    ]
    assert summary(result).endswith(
        "read 6, matched 2, would replay 2; by error-code: dag_not_found=2"
    )
    assert sum(end_offsets(setup.bootstrap, setup.target).values()) == 0


def test_defaults_read_the_dlq_topic_and_write_the_request_topic(setup: Setup) -> None:
    """Without --from-topic/--to-topic, the configured DLQ and request topics are used."""
    env = setup.env(dlq_topic=setup.source, request_topic=setup.target)
    result = run_cli("--partition", "1", env=env)
    assert result.returncode == 0, result.stderr
    setup.expect_replayed(setup.written[6:])
    assert f"{setup.source} -> {setup.target}" in summary(result)


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
