"""`trigger-consumer send`: produce one trigger request, optionally wait for its reply.

The producer comes from ``kafka_io.clients`` and the reply is read by a
``kafka_io.reader.TailReader``; this module builds no Kafka client itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, cast

from consumer.cli import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from consumer.errors import ConfigError, KafkaUnreachableError
from consumer.kafka_io.clients import open_producer
from consumer.kafka_io.preflight import check_connection
from consumer.kafka_io.reader import TailReader
from consumer.settings import Settings, load_settings

HELP = "produce a trigger request (from flags or a file); --wait prints its reply"
CORRELATION_HEADER = "correlation-id"
# reply statuses that mean "the request did what was asked"
SUCCESS_STATUSES = frozenset({"triggered", "duplicate", "rerun", "completed"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``send``."""
    parser.add_argument("--dag", help="dag_id to trigger")
    parser.add_argument("--conf", help="conf as a JSON object")
    parser.add_argument("--key", help="idempotency key (default: a new UUID)")
    parser.add_argument("--logical-date", help="RFC 3339 timestamp with a zone")
    parser.add_argument("--note", help="note stored on the DAG run")
    parser.add_argument("--track", action="store_true", help="also reply when the run finishes")
    parser.add_argument("--reply-topic", help="ask for the reply on this (allowed) topic")
    parser.add_argument(
        "--rerun",
        metavar="ID",
        help="re-run the key's run if it has one (once per ID; needs --key and a DAG in "
        "RERUN_DAG_ALLOWLIST)",
    )
    parser.add_argument(
        "--only-failed", action="store_true", help="with --rerun: clear only the failed tasks"
    )
    parser.add_argument("--file", type=Path, help="send this file's bytes as the message value")
    parser.add_argument("--topic", help="request topic (default: the configured one)")
    parser.add_argument("--wait", action="store_true", help="wait for the reply and print it")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds --wait waits")
    parser.add_argument("--config", type=Path, help="TOML config file")


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request object from the flags (the worker validates it; this only assembles it)."""
    request: dict[str, Any] = {
        "idempotency_key": args.key or str(uuid.uuid4()),
        "dag_id": args.dag,
    }
    if args.conf is not None:
        request["conf"] = json.loads(args.conf)
    optional = {
        "logical_date": args.logical_date,
        "note": args.note,
        "reply_topic": args.reply_topic,
    }
    request.update({name: value for name, value in optional.items() if value is not None})
    if args.track:
        request["track"] = True
    if args.rerun is not None:
        request["rerun"] = {"id": args.rerun, "only_failed": args.only_failed}
    return request


def run(args: argparse.Namespace) -> int:
    """Send the request; with ``--wait`` print the reply and exit by its status.

    Exits ``EXIT_USAGE`` when the brokers refuse the Kafka credentials or certificate,
    ``EXIT_UNAVAILABLE`` when none can be reached or no reply came in time.
    """
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"trigger-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.file is not None:
        value = args.file.read_bytes()
        key = args.key
        reply_topic = args.reply_topic or settings.reply_topic
    elif args.dag:
        if args.only_failed and args.rerun is None:
            print("trigger-consumer: --only-failed needs --rerun", file=sys.stderr)
            return EXIT_USAGE
        try:
            request = build_request(args)
        except json.JSONDecodeError as exc:
            print(f"trigger-consumer: --conf is not JSON: {exc.msg}", file=sys.stderr)
            return EXIT_USAGE
        value = json.dumps(request).encode()
        key = request["idempotency_key"]
        reply_topic = request.get("reply_topic", settings.reply_topic)
    else:
        print("trigger-consumer: send needs --dag or --file", file=sys.stderr)
        return EXIT_USAGE
    return _send(args, settings, key=key, value=value, reply_topic=reply_topic)


def _send(
    args: argparse.Namespace, settings: Settings, *, key: str | None, value: bytes, reply_topic: str
) -> int:
    """Produce ``value``; with ``--wait`` print the reply. Returns the exit code."""
    try:
        check_connection(settings)  # refused credentials fail here instead of hanging below
    except (ConfigError, KafkaUnreachableError) as exc:
        print(f"trigger-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_UNAVAILABLE
    correlation_id = str(uuid.uuid4())
    # positioned at the end of every reply partition before sending, so the reply is seen
    listener = TailReader(settings, reply_topic) if args.wait else None
    _produce(settings, args.topic or settings.request_topic, key, value, correlation_id)
    print(json.dumps({"sent": {"key": key, "correlation_id": correlation_id}}), file=sys.stderr)
    if listener is None:
        return EXIT_OK
    try:
        reply = _await_reply(listener, correlation_id, args.timeout)
    finally:
        listener.close()
    if reply is None:
        print(f"trigger-consumer: no reply within {args.timeout:g} s", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(reply, indent=2))
    return EXIT_OK if reply.get("status") in SUCCESS_STATUSES else EXIT_FAILURE


def _produce(
    settings: Settings, topic: str, key: str | None, value: bytes, correlation_id: str
) -> None:
    producer = open_producer(settings, acks="all")
    try:
        producer.send(
            topic,
            key=key.encode() if key else None,
            value=value,
            headers=[(CORRELATION_HEADER, correlation_id.encode())],
        ).get(timeout=30)
    finally:
        producer.close()


def _await_reply(
    listener: TailReader, correlation_id: str, timeout: float
) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    wanted = correlation_id.encode()
    while time.monotonic() < deadline:
        for record in listener.poll(timeout=0.5):
            if record.header(CORRELATION_HEADER) == wanted:
                # the worker's replies always carry a value
                reply: dict[str, Any] = json.loads(cast("bytes", record.value))
                return reply
    return None
