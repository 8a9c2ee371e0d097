"""Logging set-up (structlog): JSON off a terminal, secrets masked, message context bound."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import structlog

from consumer.record import InboundRecord

REDACTED = "***"
# keys whose values are never written, wherever they appear in an event
SECRET_KEYS = frozenset(
    {"password", "token", "access_token", "authorization", "secret", "sasl_plain_password"}
)


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: mask the value of every key that names a secret."""
    for key in list(event):
        if _names_secret(key):
            event[key] = REDACTED
    return event


@lru_cache(maxsize=1024)  # a few dozen distinct keys, checked on every log line
def _names_secret(key: str) -> bool:
    lowered = key.lower()
    return any(secret in lowered for secret in SECRET_KEYS)


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    """Configure structlog once for the process.

    Args:
        log_format: ``json``, ``console``, or ``auto`` (console on a terminal, else JSON).
        level: the minimum level name.
    """
    as_json = log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())
    # libraries log through stdlib logging (kafka-python's authentication failures, say):
    # their warnings and errors go to stderr instead of nowhere
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info if as_json else _keep,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def _keep(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event


def message_fields(
    record: InboundRecord, idempotency_key: str | None = None, dag_id: str | None = None
) -> dict[str, Any]:
    """The five identifiers of spec §6 of one message, as log fields."""
    return {
        "idempotency_key": idempotency_key,
        "dag_id": dag_id,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }


@contextmanager
def bind_message(
    record: InboundRecord, idempotency_key: str | None = None, dag_id: str | None = None
) -> Iterator[None]:
    """Bind the five identifiers of spec §6 to every log line written inside the block."""
    with structlog.contextvars.bound_contextvars(**message_fields(record, idempotency_key, dag_id)):
        yield
