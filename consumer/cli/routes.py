"""`trigger-consumer routes check`: which routes match an event, offline, and what each builds.

Reads the same settings as ``run`` (``TRIGGER_CONSUMER_*`` and the config file), so the
answer is the worker's: the DAG and reply-topic allow-lists and the limits apply.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from consumer.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from consumer.errors import ConfigError
from consumer.limits import Limits
from consumer.pipeline.policy import Policy
from consumer.pipeline.screen import Refusal, screen
from consumer.record import Headers, InboundRecord
from consumer.routes.config import TopicOptions
from consumer.routes.derive import Router, RouteVerdict
from consumer.run_id import run_id_for
from consumer.settings import Settings, load_settings

HELP = "check routes offline: which routes match an event and the request each builds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``check`` action and its flags.

    Args:
        parser: the ``routes`` subparser.
    """
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help=HELP, description=HELP)
    check.add_argument("--event", type=Path, required=True, help="a file holding the event value")
    check.add_argument(
        "--topic", help="the topic the event is read from (default: try every route)"
    )
    check.add_argument(
        "--headers",
        metavar="JSON",
        help='the record headers as a JSON object, like \'{"ce_type": "x"}\' (or @FILE)',
    )
    check.add_argument("--config", type=Path, help="TOML config file (as for run)")
    check.add_argument("--json", action="store_true", help="print one JSON object per route")


def run(args: argparse.Namespace) -> int:
    """Print one verdict per route.

    Returns:
        ``EXIT_OK`` when a route matches and builds a valid, allowed request;
        ``EXIT_FAILURE`` when none does; ``EXIT_USAGE`` for bad settings or input files.
    """
    try:
        settings = load_settings(args.config)
        headers = _headers(args.headers)
        value = args.event.read_bytes()
    except (ConfigError, OSError, ValueError) as exc:
        sys.stderr.write(f"trigger-consumer: {_describe(exc)}\n")
        return EXIT_USAGE
    if not settings.routes:
        sys.stderr.write("trigger-consumer: no [[routes]] are configured\n")
        return EXIT_USAGE
    topic = args.topic or settings.routes.routes[0].topics[0]
    record = InboundRecord(topic, 0, 0, None, None, value, headers)
    router = Router(settings.routes, settings.route_topics)
    limits, policy = _limits(settings), _policy(settings)
    verdicts, refusal = router.explain(record, limits, any_topic=args.topic is None)
    verdicts = [_screened(verdict, limits, policy, headers) for verdict in verdicts]
    if refusal is not None:
        _print(args, {"event": "refused", "code": refusal.code.value, "message": refusal.message})
        return EXIT_FAILURE
    for verdict in verdicts:
        _print(args, _describe_verdict(verdict))
    if not any(verdict.matched for verdict in verdicts):
        options = settings.route_topics.get(topic, TopicOptions())
        fate = "ignored" if args.topic and options.unmatched == "ignore" else "no_route_matched"
        _print(args, {"event": "unmatched", "code": fate, "message": "no route matches this event"})
    ok = any(verdict.matched and verdict.error is None for verdict in verdicts)
    return EXIT_OK if ok else EXIT_FAILURE


def _screened(
    verdict: RouteVerdict, limits: Limits, policy: Policy, headers: Headers
) -> RouteVerdict:
    """The verdict once its request is screened as the pipeline screens it (validate, policy)."""
    payload = verdict.payload
    if payload is None or verdict.error is not None:
        return verdict
    screened = screen(None, limits, policy, headers, read=lambda: payload)
    if isinstance(screened, Refusal):
        return replace(verdict, error=screened.rejected)
    return verdict


def _describe_verdict(verdict: RouteVerdict) -> dict[str, Any]:
    line: dict[str, Any] = {"route": verdict.route, "matched": verdict.matched}
    if verdict.payload is not None:
        line["request"] = verdict.payload
    if verdict.error is not None:
        line["code"] = verdict.error.code.value
        line["message"] = verdict.error.message
    elif verdict.payload is not None:
        line["dag_run_id"] = run_id_for(verdict.payload["idempotency_key"])
    return line


def _print(args: argparse.Namespace, line: dict[str, Any]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        return
    if "route" not in line:
        sys.stdout.write(f"event: {line['code']}: {line['message']}\n")
        return
    text = f"route {line['route']}: {'matches' if line['matched'] else 'does not match'}"
    if "code" in line:
        text += f": {line['code']}: {line['message']}"
    elif "dag_run_id" in line:
        text += f": ok: DAG run id {line['dag_run_id']}"
    if "request" in line:
        text += "\n  " + json.dumps(line["request"], ensure_ascii=False)
    sys.stdout.write(text + "\n")


def _headers(text: str | None) -> tuple[tuple[str, bytes], ...]:
    """``--headers``: a JSON object of strings, inline or ``@FILE``."""
    if text is None:
        return ()
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    headers = json.loads(text)
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError("--headers: a JSON object of string values")
    return tuple((name, value.encode("utf-8")) for name, value in headers.items())


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_message_bytes=settings.max_message_bytes,
        max_conf_bytes=settings.max_conf_bytes,
        max_conf_depth=settings.max_conf_depth,
    )


def _policy(settings: Settings) -> Policy:
    """The worker's allow-lists; an unset DAG allow-list checks nothing (run refuses it)."""
    return Policy(
        dag_patterns=settings.dag_allowlist or None,
        reply_topics=frozenset(settings.reply_topic_allowlist),
        rerun_patterns=settings.rerun_dag_allowlist,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)
