"""`trigger-consumer schema`: prints exactly the schemas stored in schemas/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "schema", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=60,
        check=True,
    )


@pytest.mark.parametrize(
    ("which", "file"), [("request", "trigger-request.v1.json"), ("reply", "reply.v1.json")]
)
def test_schema_prints_the_stored_file(which: str, file: str) -> None:
    """`schema request|reply` prints the file in schemas/ byte for byte."""
    assert _cli(which).stdout == (ROOT / "schemas" / file).read_text(encoding="utf-8")


def test_schema_without_argument_prints_both() -> None:
    """Without an argument one JSON object holds both schemas."""
    both = json.loads(_cli().stdout)
    assert set(both) == {"request", "reply"}
    assert both["request"]["title"] == "TriggerRequest"
    assert both["reply"]["title"] == "Reply"


def test_unknown_schema_is_a_usage_error() -> None:
    """An unknown schema name exits 2."""
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "schema", "dlq"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
