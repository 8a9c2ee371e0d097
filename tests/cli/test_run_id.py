"""`trigger-consumer run-id`: prints the DAG run id of each key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from consumer.run_id import run_id_for

ROOT = Path(__file__).resolve().parents[2]


def _cli(*keys: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "run-id", *keys],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_prints_one_run_id_per_key_in_order() -> None:
    """Each key's run id is printed on its own line, in argument order."""
    keys = ["order-42", "order 42/2025", "café", "a" * 256]
    result = _cli(*keys)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [run_id_for(key) for key in keys]
    assert result.stdout.splitlines()[:2] == [
        "kafka__order-42",
        "kafka__order_42_2025~fb1597a34d72a42c",
    ]


def test_invalid_keys_are_refused() -> None:
    """A key the contract refuses (empty, too long, control chars) exits 2 and prints no ids."""
    for bad in ("", "k" * 257, "tab\there"):
        result = _cli("good", bad)
        assert result.returncode == 2
        assert result.stdout == ""
        assert "invalid idempotency key" in result.stderr
