"""The official Apache Kafka broker (KRaft, one node) from Maven Central jars, on loopback."""

from __future__ import annotations

import base64
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import procs
from devstack.paths import DEVSTACK_DIR, cache_dir

KAFKA_VERSION = "4.4.0"
LOG4J2_VERSION = "2.25.1"
READY_TIMEOUT = 90.0
MAVEN_TIMEOUT = 900.0
START_ATTEMPTS = 3  # KRaft quorum formation can time out on a loaded machine; retry fresh

JVM_FLAGS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]

LOG4J2_PROPERTIES = """\
status = warn
appender.f.type = File
appender.f.name = F
appender.f.fileName = ${sys:kafka.logs.dir}/server.log
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.f.ref = F
logger.req.name = kafka.request.logger
logger.req.level = WARN
logger.sc.name = state.change.logger
logger.sc.level = WARN
"""

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{ctrl_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data_dir}
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
"""


PropertyOverrides = Callable[[int, int], dict[str, str]]
"""Given a broker's (port, ctrl_port), the server properties it replaces or adds."""


def merge_properties(base: str, overrides: dict[str, str]) -> str:
    """``base`` server.properties text with ``overrides`` replacing or adding properties."""
    remaining = dict(overrides)
    lines = []
    for line in base.splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={remaining.pop(key)}" if key in remaining else line)
    lines += [f"{key}={value}" for key, value in remaining.items()]
    return "\n".join(lines) + "\n"


def libs_dir() -> Path:
    """The jars of the stack's broker (``KAFKA_VERSION``), resolved once."""
    return resolve_libs(KAFKA_VERSION, DEVSTACK_DIR / "pom.xml", {"log4j2.version": LOG4J2_VERSION})


def resolve_libs(version: str, pom: Path, properties: dict[str, str]) -> Path:
    """Resolve a broker's jars with Maven once and return the cached ``libs`` directory.

    Args:
        version: the Kafka release (the POM's ``kafka.version``).
        pom: the POM naming the broker and its logging binding.
        properties: the POM's other properties (logging versions).

    Returns:
        ``<cache>/kafka-<version>/libs``, complete (a marker says so).
    """
    target = cache_dir() / f"kafka-{version}"
    libs = target / "libs"
    marker = target / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise procs.StackError("Kafka needs `java` (17+) and `mvn` on PATH.")
    shutil.rmtree(libs, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    defines = [
        f"-D{key}={value}" for key, value in {"kafka.version": version, **properties}.items()
    ]
    procs.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            *defines,
            # a pinned plugin: a bare `dependency:` may resolve one too new for Maven 3.8
            "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        what=f"resolving Kafka {version} jars with Maven",
        timeout=MAVEN_TIMEOUT,
    )
    marker.write_text(version)
    return libs


def new_cluster_id() -> str:
    """A 22-character KRaft cluster id, as Kafka's ``Uuid.randomUuid()`` makes (never with '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if "-" not in cluster_id:
            return cluster_id


@dataclass
class KafkaBroker:
    """One broker process; ``port``, ``ctrl_port`` and ``work`` stay fixed across restarts."""

    work: Path
    port: int
    ctrl_port: int
    pid: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect."""
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """The broker's own log file."""
        return self.work / "logs" / "server.log"

    def _libs(self) -> Path:
        """The broker's jars (an older release resolves others)."""
        return libs_dir()

    def _write_log_config(self) -> None:
        """Write the file-only logging config that ``_log_flags`` points at."""
        (self.work / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

    def _log_flags(self) -> list[str]:
        """The JVM flags that select the logging config."""
        return [f"-Dlog4j2.configurationFile={self.work / 'log4j2.properties'}"]

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            "java",
            *JVM_FLAGS,
            f"-Dkafka.logs.dir={self.work / 'logs'}",
            *self._log_flags(),
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def _server_properties(self) -> str:
        """The broker's ``server.properties`` text (a secured broker adds to it)."""
        return SERVER_PROPERTIES.format(
            port=self.port, ctrl_port=self.ctrl_port, data_dir=self.work / "data"
        )

    def _format_args(self) -> list[str]:
        """Extra ``StorageTool format`` arguments (a secured broker adds SCRAM users)."""
        return []

    def _configure(self, libs: Path) -> None:
        """Write the config files and format storage unless it already holds data."""
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self._write_log_config()
        (self.work / "server.properties").write_text(self._server_properties())
        if (self.work / "data" / "meta.properties").exists():
            return
        procs.run(
            self._java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.work / "server.properties"),
                *self._format_args(),
            ),
            what="formatting Kafka storage",
            timeout=120,
        )

    def start(self, *, tie_to_parent: bool) -> None:
        """Start the broker and wait until a metadata request succeeds."""
        libs = self._libs()
        self._configure(libs)
        start_mark = self.log.stat().st_size if self.log.exists() else 0
        self.pid = procs.spawn(
            self._java(libs, "kafka.Kafka", str(self.work / "server.properties")),
            log=self.work / "logs" / "kafkaServer.out",
            cwd=self.work,
            tie_to_parent=tie_to_parent,
        )

        def started() -> bool:
            if not self.log.exists():
                return False
            with self.log.open("rb") as fh:
                fh.seek(start_mark)
                return b"Kafka Server started" in fh.read()

        log = self.work / "logs" / "kafkaServer.out"
        procs.wait_for("Kafka broker", started, timeout=READY_TIMEOUT, pid=self.pid, log=log)
        procs.wait_for(
            "Kafka metadata", self.answers_metadata, timeout=READY_TIMEOUT, pid=self.pid, log=log
        )
        procs.wait_for(
            "Kafka group coordinator",
            self.coordinates_groups,
            timeout=READY_TIMEOUT,
            pid=self.pid,
            log=log,
        )

    def answers_metadata(self) -> bool:
        """Tell whether the broker answers a metadata request (not just a TCP connect)."""
        return self._admin_succeeds(lambda admin: admin.list_topics())

    def coordinates_groups(self) -> bool:
        """Tell whether consumer groups work (the offsets topic exists and has a leader)."""
        return self._admin_succeeds(
            lambda admin: admin.list_consumer_group_offsets("devstack-readiness-probe")
        )

    def _admin_succeeds(self, call: Callable[[Any], object]) -> bool:
        from kafka import KafkaAdminClient  # noqa: PLC0415 -- only when a broker is used
        from kafka.errors import KafkaError  # noqa: PLC0415

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000
            )
        except (KafkaError, OSError):
            return False
        try:
            call(admin)
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()
        return True

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM runs its shutdown hook), SIGKILL after 30 s."""
        if self.pid is not None:
            procs.stop(self.pid, sig=signal.SIGTERM, grace=30)
            self.pid = None

    def restart(self, *, tie_to_parent: bool) -> None:
        """Stop and start again on the same ports with the data kept."""
        self.stop()
        self.start(tie_to_parent=tie_to_parent)


@dataclass(kw_only=True)
class TunedKafkaBroker(KafkaBroker):
    """A private ``KafkaBroker`` with some server properties replaced or added.

    A subclass rather than a field on ``KafkaBroker``: the shared stack's state file is
    ``asdict(KafkaBroker)``, and it must stay exactly as it was.
    """

    overrides: dict[str, str] = field(default_factory=dict)

    def _server_properties(self) -> str:
        return merge_properties(super()._server_properties(), self.overrides)


def start_broker(
    work: Path,
    *,
    tie_to_parent: bool,
    overrides: PropertyOverrides | None = None,
    kind: type[KafkaBroker] = KafkaBroker,
) -> KafkaBroker:
    """Format and start a fresh broker in ``work`` on free ports, retrying with new ones.

    Args:
        work: its own directory (wiped first).
        tie_to_parent: the broker dies with this process.
        overrides: server properties to replace or add, given the broker's ports
            (``auto.create.topics.enable=false``, another listener, ...).
        kind: the broker class without overrides (``kafka3.Kafka3Broker`` for 3.x).

    Returns:
        The running broker.

    Raises:
        StackError: when it did not start after ``START_ATTEMPTS`` tries.
    """
    error: procs.StackError | None = None  # the last attempt's, re-raised after the last try
    for _ in range(START_ATTEMPTS):
        shutil.rmtree(work, ignore_errors=True)
        port, ctrl_port = procs.free_port(), procs.free_port()
        broker: KafkaBroker
        if overrides is None:
            broker = kind(work=work, port=port, ctrl_port=ctrl_port)
        else:
            props = overrides(port, ctrl_port)
            broker = TunedKafkaBroker(work=work, port=port, ctrl_port=ctrl_port, overrides=props)
        try:
            broker.start(tie_to_parent=tie_to_parent)
        except procs.StackError as exc:
            broker.stop()
            error = exc
            continue
        return broker
    raise error or procs.StackError("Kafka did not start")
