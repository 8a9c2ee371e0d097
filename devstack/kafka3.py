"""An Apache Kafka 3.x broker (KRaft, one node) from Maven Central jars: the compatibility smoke's.

It differs from the stack's 4.x broker only in its jars (``pom-kafka3.xml``) and its logging
(reload4j, configured by a log4j 1 properties file); the server properties are the same
(3.9 ignores the 4.x-only ones with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devstack.kafka import KafkaBroker, resolve_libs, start_broker
from devstack.paths import DEVSTACK_DIR

KAFKA3_VERSION = "3.9.2"
SLF4J_VERSION = "1.7.36"

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, F
log4j.appender.F=org.apache.log4j.FileAppender
log4j.appender.F.File=${kafka.logs.dir}/server.log
log4j.appender.F.layout=org.apache.log4j.PatternLayout
log4j.appender.F.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def kafka3_libs() -> Path:
    """Resolve the 3.x broker's jars with Maven once; return the cached ``libs`` directory."""
    return resolve_libs(
        KAFKA3_VERSION, DEVSTACK_DIR / "pom-kafka3.xml", {"slf4j.version": SLF4J_VERSION}
    )


@dataclass
class Kafka3Broker(KafkaBroker):
    """A ``KafkaBroker`` of release ``KAFKA3_VERSION``."""

    def _libs(self) -> Path:
        return kafka3_libs()

    def _write_log_config(self) -> None:
        (self.work / "log4j.properties").write_text(LOG4J_PROPERTIES)

    def _log_flags(self) -> list[str]:
        return [f"-Dlog4j.configuration=file:{self.work / 'log4j.properties'}"]


def start_kafka3(work: Path, *, tie_to_parent: bool) -> KafkaBroker:
    """Format and start a fresh 3.x broker in ``work`` on free ports (see ``start_broker``)."""
    return start_broker(work, tie_to_parent=tie_to_parent, kind=Kafka3Broker)
