"""`trigger-consumer validate`: check request messages offline (decode, validate, policy).

It reads the same settings as ``run`` (``TRIGGER_CONSUMER_*`` and the config file: the DAG
and reply-topic allow-lists and the limits), so that ``ok`` means the worker accepts the
request; flags override them. Without a DAG allow-list anywhere, DAGs are not checked
(``run`` would refuse to start).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from consumer.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from consumer.errors import ConfigError
from consumer.limits import Limits
from consumer.pipeline import Refusal, screen
from consumer.pipeline.policy import Policy, split_list
from consumer.run_id import run_id_for
from consumer.settings import Settings, load_settings

HELP = "check request messages offline: decode, validate and (with allow-lists) policy"
STDIN = "-"


@dataclass(frozen=True)
class Verdict:
    """The result for one message.

    Attributes:
        source: ``FILE`` or ``FILE:LINE``.
        ok: whether the message is a valid request.
        code: the error code of an invalid message, else None.
        message: why it is invalid, or what the valid request will do.
    """

    source: str
    ok: bool
    code: str | None
    message: str

    def as_line(self) -> str:
        """Render as one line of text: ``SOURCE: ok: ...`` or ``SOURCE: CODE: ...``."""
        text = f"{self.source}: {'ok' if self.ok else self.code}: {self.message}"
        return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)

    def as_json(self) -> str:
        """Render as one JSON object: ``{"source", "ok", "code", "message"}``."""
        return json.dumps(
            {"source": self.source, "ok": self.ok, "code": self.code, "message": self.message}
        )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the files and flags.

    Args:
        parser: the ``validate`` subparser.
    """
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="a file holding one message value ('-': stdin)"
    )
    parser.add_argument(
        "--lines", action="store_true", help="each non-blank line of a file is one message"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per message instead of text"
    )
    parser.add_argument(
        "--dag-allowlist",
        metavar="PATTERNS",
        help="comma-separated DAG glob patterns; when given, a DAG outside is dag_not_allowed",
    )
    parser.add_argument(
        "--reply-topic-allowlist",
        metavar="TOPICS",
        help="comma-separated topics; when given, any other reply_topic is reply_topic_not_allowed",
    )
    parser.add_argument(
        "--rerun-dag-allowlist",
        metavar="PATTERNS",
        help="comma-separated DAG glob patterns whose runs a request with rerun may re-run "
        "(default: the worker's RERUN_DAG_ALLOWLIST)",
    )
    parser.add_argument("--max-message-bytes", type=_positive_int)
    parser.add_argument("--max-conf-bytes", type=_positive_int)
    parser.add_argument("--max-conf-depth", type=_positive_int)
    parser.add_argument("--config", type=Path, help="TOML config file (as for run)")


def run(args: argparse.Namespace) -> int:
    """Check every message and print one verdict per message.

    Args:
        args: the parsed flags.

    Returns:
        ``EXIT_OK`` when every message is valid, ``EXIT_FAILURE`` when one is not,
        ``EXIT_USAGE`` when a file cannot be read.
    """
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"trigger-consumer: {exc}\n")
        return EXIT_USAGE
    limits, policy = _checks(args, settings)
    code = EXIT_OK
    for path in args.files:
        try:
            for source, value in _messages(path, lines=args.lines):
                verdict = check_message(source, value, limits, policy)
                sys.stdout.write((verdict.as_json() if args.json else verdict.as_line()) + "\n")
                if not verdict.ok and code == EXIT_OK:
                    code = EXIT_FAILURE
        except OSError as exc:
            sys.stderr.write(f"{path}: cannot read: {exc.strerror or exc}\n")
            code = EXIT_USAGE
    return code


def _checks(args: argparse.Namespace, settings: Settings) -> tuple[Limits, Policy]:
    """The limits and allow-lists: the worker's settings, each overridden by its flag."""
    limits = Limits(
        max_message_bytes=args.max_message_bytes or settings.max_message_bytes,
        max_conf_bytes=args.max_conf_bytes or settings.max_conf_bytes,
        max_conf_depth=args.max_conf_depth or settings.max_conf_depth,
    )
    dag_patterns = (
        split_list(args.dag_allowlist)
        if args.dag_allowlist is not None
        else list(settings.dag_allowlist) or None
    )
    reply_topics = (
        split_list(args.reply_topic_allowlist)
        if args.reply_topic_allowlist is not None
        else list(settings.reply_topic_allowlist)
    )
    rerun_patterns = (
        split_list(args.rerun_dag_allowlist)
        if args.rerun_dag_allowlist is not None
        else list(settings.rerun_dag_allowlist)
    )
    policy = Policy(
        dag_patterns=None if dag_patterns is None else tuple(dag_patterns),
        reply_topics=frozenset(reply_topics),
        rerun_patterns=tuple(rerun_patterns),
    )
    return limits, policy


def check_message(source: str, value: bytes, limits: Limits, policy: Policy) -> Verdict:
    """Run decode, validate and the allow-lists on one message value.

    Args:
        source: how to name the message in the verdict.
        value: the raw message value.
        limits: size and depth bounds.
        policy: the allow-lists (a None list skips its check).

    Returns:
        The verdict.
    """
    request = screen(value, limits, policy)
    if isinstance(request, Refusal):
        rejected = request.rejected
        return Verdict(source, ok=False, code=rejected.code.value, message=rejected.message)
    run_id = run_id_for(request.idempotency_key)
    return Verdict(
        source, ok=True, code=None, message=f"valid: DAG {request.dag_id}, DAG run id {run_id}"
    )


def _messages(path: str, *, lines: bool) -> Iterator[tuple[str, bytes]]:
    if path == STDIN:
        yield from _read(sys.stdin.buffer, path, lines=lines)
        return
    with open(path, "rb") as stream:
        yield from _read(stream, path, lines=lines)


def _read(stream: BinaryIO, path: str, *, lines: bool) -> Iterator[tuple[str, bytes]]:
    if not lines:
        yield path, stream.read()
        return
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield f"{path}:{number}", line.rstrip(b"\r\n")
