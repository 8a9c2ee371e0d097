"""`trigger-consumer routes check`: offline verdicts for the examples' events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_CONSUMER_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "routes", "check", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_debezium_example_builds_its_request() -> None:
    """The insert event matches its route and builds the request with the row's id."""
    result = _cli(
        "--config",
        EXAMPLES / "debezium/routes.toml",
        "--event",
        EXAMPLES / "debezium/event.json",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert line["request"]["idempotency_key"] == "order-inserted:inventory.orders/10042"
    assert line["request"]["conf"]["order_id"] == 10042


def test_an_event_no_route_matches_says_so_and_exits_one(tmp_path: Path) -> None:
    """An S3 delete event against the S3 route: no match, exit 1."""
    event = json.loads((EXAMPLES / "s3/event.json").read_text())
    event["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    path = tmp_path / "delete.json"
    path.write_text(json.dumps(event))
    result = _cli("--config", EXAMPLES / "s3/routes.toml", "--event", path)
    assert result.returncode == 1
    assert "route s3-object-created: does not match" in result.stdout
    assert "no_route_matched" in result.stdout


def test_a_binary_cloudevent_with_headers_from_a_file() -> None:
    """--headers @FILE gives the ce_* headers of a binary-mode CloudEvent."""
    ce = EXAMPLES / "cloudevents"
    result = _cli(
        "--config",
        ce / "routes.toml",
        "--event",
        ce / "binary-data.json",
        "--headers",
        f"@{ce / 'binary-headers.json'}",
        "--topic",
        "billing-events",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "route invoice-issued: matches: ok" in result.stdout
