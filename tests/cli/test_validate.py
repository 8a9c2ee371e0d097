"""`trigger-consumer validate`: offline checks of message files, one verdict per message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VALID = b'{"idempotency_key": "order 42", "dag_id": "etl_daily"}'


def _cli(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "validate", *map(str, args)],
        input=stdin.decode("utf-8", "surrogateescape"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_valid_file_exits_zero(tmp_path: Path) -> None:
    """A file holding one valid message prints ok with its run id and exits 0."""
    path = tmp_path / "ok.json"
    path.write_bytes(VALID)
    result = _cli(path)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == f"{path}: ok: valid: DAG etl_daily, DAG run id kafka__order_42~59096d5ad4f7817d\n"
    )


def test_invalid_files_print_their_codes_and_exit_one(tmp_path: Path) -> None:
    """Each file gets one line with its error code; any invalid file makes the exit code 1."""
    good, bad, binary = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "bin"
    good.write_bytes(VALID)
    bad.write_bytes(b'{"idempotency_key": "k", "dagid": "etl_daily"}')
    binary.write_bytes(b"\xff\xfe\x00")
    result = _cli(good, bad, binary)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{good}: ok: ")
    assert lines[1] == f"{bad}: unknown_fields: unknown field(s): dagid"
    assert lines[2].startswith(f"{binary}: invalid_encoding: ")


def test_lines_mode_reads_one_message_per_line_and_json_output(tmp_path: Path) -> None:
    """With --lines each non-blank line is a message; --json prints source/ok/code/message."""
    path = tmp_path / "batch.jsonl"
    path.write_bytes(
        VALID + b"\n\n" + b'{"idempotency_key": "k", "dag_id": "d", "track": "yes"}\r\n[1]\n'
    )
    result = _cli("--lines", "--json", path)
    assert result.returncode == 1
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(v["source"], v["ok"], v["code"]) for v in verdicts] == [
        (f"{path}:1", True, None),
        (f"{path}:3", False, "schema_violation"),
        (f"{path}:4", False, "not_an_object"),
    ]
    assert all(set(v) == {"source", "ok", "code", "message"} for v in verdicts)


def test_stdin_is_dash() -> None:
    """'-' reads messages from stdin."""
    result = _cli("--lines", "-", stdin=VALID + b"\n" + VALID + b"\n")
    assert result.returncode == 0
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == ["-:1", "-:2"]


def test_allow_lists_add_the_policy_check(tmp_path: Path) -> None:
    """With allow-lists, DAGs and reply topics outside them are refused with their codes."""
    path = tmp_path / "batch.jsonl"
    path.write_text(
        '{"idempotency_key": "a", "dag_id": "etl_daily"}\n'
        '{"idempotency_key": "b", "dag_id": "report"}\n'
        '{"idempotency_key": "c", "dag_id": "etl_x", "reply_topic": "elsewhere"}\n'
    )
    result = _cli(
        "--lines", "--json", "--dag-allowlist", "etl_*", "--reply-topic-allowlist", "mine", path
    )
    codes = [json.loads(line)["code"] for line in result.stdout.splitlines()]
    assert codes == [None, "dag_not_allowed", "reply_topic_not_allowed"]
    assert result.returncode == 1
    # without flags, the worker's own settings: no DAG allow-list set, and no extra reply
    # topic allowed (the worker rejects "elsewhere" too)
    without = _cli("--lines", "--json", path)
    codes = [json.loads(line)["code"] for line in without.stdout.splitlines()]
    assert codes == [None, None, "reply_topic_not_allowed"]


def test_the_workers_settings_apply_and_flags_override_them(tmp_path: Path) -> None:
    """Validate reads TRIGGER_CONSUMER_* and the config file as run does; a flag wins."""
    path = tmp_path / "batch.jsonl"
    path.write_text(
        '{"idempotency_key": "a", "dag_id": "etl_daily"}\n'
        '{"idempotency_key": "b", "dag_id": "report", "reply_topic": "mine"}\n'
    )
    config = tmp_path / "worker.toml"
    config.write_text('reply_topic_allowlist = ["mine"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_CONSUMER_")}
    env["TRIGGER_CONSUMER_DAG_ALLOWLIST"] = "etl_*"
    env["TRIGGER_CONSUMER_CONFIG_FILE"] = str(config)

    def codes(*flags: str) -> list[str | None]:
        result = subprocess.run(
            [sys.executable, "-m", "consumer", "validate", "--lines", "--json", *flags, str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
            env=env,
        )
        return [json.loads(line)["code"] for line in result.stdout.splitlines()]

    assert codes() == [None, "dag_not_allowed"]
    assert codes("--dag-allowlist", "*") == [None, None]
    assert codes("--dag-allowlist", "*", "--reply-topic-allowlist", "other") == [
        None,
        "reply_topic_not_allowed",
    ]


def test_limits_are_configurable(tmp_path: Path) -> None:
    """--max-message-bytes and --max-conf-bytes tighten the bounds."""
    path = tmp_path / "m.json"
    path.write_bytes(b'{"idempotency_key": "k", "dag_id": "d", "conf": {"a": "xxxxxxxxxx"}}')
    assert "message_too_large" in _cli("--max-message-bytes", "10", path).stdout
    assert "conf_too_large" in _cli("--max-conf-bytes", "10", path).stdout
    assert _cli("--max-conf-depth", "0", path).returncode == 2


def test_control_characters_never_break_the_line(tmp_path: Path) -> None:
    """A message naming a field with a newline still yields exactly one output line."""
    path = tmp_path / "m.json"
    path.write_bytes(b'{"idempotency_key": "k", "dag_id": "d", "a\\nb": 1}')
    result = _cli(path)
    assert len(result.stdout.splitlines()) == 1
    assert "unknown_fields" in result.stdout


def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    """A missing file is reported on stderr and the exit code is 2; other files still run."""
    good = tmp_path / "good.json"
    good.write_bytes(VALID)
    result = _cli(tmp_path / "missing.json", good)
    assert result.returncode == 2
    assert "missing.json: cannot read" in result.stderr
    assert f"{good}: ok" in result.stdout
