"""`trigger-consumer deferred` run as a subprocess on a SQLite file and on the devstack PostgreSQL.

Rows are deferred through the store API itself; on SQLite a manual clock set two hours back
gives them an age the listing must show (the CLI reads the store's clock: the system's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.store import IdempotencyStore
from consumer.store.postgres import PostgresStore
from consumer.store.sqlite import SqliteStore
from tests.conftest import unique_name
from tests.flow.backlogs import fill_backlog
from tests.store.stores import RETENTION, ManualClock

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "TRIGGER_CONSUMER_"
AGO = timedelta(hours=2)
LIMITS = """
airflow_max_queued_runs = 50

[[dag_limits]]
dags = ["etl_*"]
max_queued_runs = 20
rate = "120/min"
"""


def _sqlite_store(tmp_path: Path) -> Path:
    """A store file holding ``fill_backlog``'s rows, deferred two hours ago."""
    path = tmp_path / "store.db"
    with SqliteStore(path, RETENTION, clock=ManualClock(datetime.now(UTC) - AGO)) as store:
        fill_backlog(store)
    return path


def _cli(tmp_path: Path, store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``deferred`` with a config file naming ``store_url`` and the limits."""
    config = tmp_path / f"{unique_name('config')}.toml"
    config.write_text(f"store_url = {json.dumps(store_url)}\n{LIMITS}")
    env = {name: value for name, value in os.environ.items() if not name.startswith(PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "deferred", "--config", str(config), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def _released(store: IdempotencyStore) -> dict[str, bool]:
    """Each due row's key and whether it was released."""
    return {row.key: row.released for row in store.due_deferred()}


def test_the_table_lists_each_dag_and_reason_with_age_and_limit(tmp_path: Path) -> None:
    """Counts per DAG and reason, the oldest age on the store's clock and each DAG's limits."""
    path = _sqlite_store(tmp_path)

    result = _cli(tmp_path, f"sqlite:///{path}")

    assert result.returncode == 0, result.stderr
    header, headings, *rows = result.stdout.splitlines()
    assert header == f"5 deferred requests in sqlite:///{path}, oldest 2h00m (MAX_DEFERRED 100000)"
    assert headings.split() == ["DAG", "REASON", "WAITING", "OLDEST", "LIMIT"]
    etl = "max_queued_runs 20, rate 120/min, AIRFLOW_MAX_QUEUED_RUNS 50"
    assert [row.split(maxsplit=4) for row in rows] == [
        ["etl_orders", "limit", "2", "2h00m", etl],
        ["etl_orders", "not_before", "1", "2h00m", etl],
        ["reports", "limit", "2", "2h00m", "AIRFLOW_MAX_QUEUED_RUNS 50"],
    ]


def test_json_gives_counts_ages_and_limits(tmp_path: Path) -> None:
    """``--json``: the total, MAX_DEFERRED, and per line count, age in seconds and limit values."""
    path = _sqlite_store(tmp_path)

    result = _cli(tmp_path, f"sqlite:///{path}", "--json")

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["total"], doc["max_deferred"]) == (5, 100_000)
    lines = {(line["dag_id"], line["reason"]): line for line in doc["deferred"]}
    assert {key: line["count"] for key, line in lines.items()} == {
        ("etl_orders", "limit"): 2,
        ("etl_orders", "not_before"): 1,
        ("reports", "limit"): 2,
    }
    assert all(7200 <= line["oldest_age_seconds"] < 7260 for line in lines.values())
    assert lines["etl_orders", "limit"]["limit"] == {
        "max_queued_runs": 20,
        "rate": "120/min",
        "airflow_max_queued_runs": 50,
    }
    assert lines["reports", "limit"]["limit"]["max_queued_runs"] is None


def test_release_lets_that_dags_requests_through_and_no_other(tmp_path: Path) -> None:
    """``--release etl_orders`` releases its three rows (the one a day ahead comes due too)."""
    path = _sqlite_store(tmp_path)

    result = _cli(tmp_path, f"sqlite:///{path}", "--release", "etl_orders")

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "released 3 deferred requests of etl_orders; the releaser triggers them now, limits aside\n"
    )
    with SqliteStore(path, RETENTION) as store:
        released = _released(store)
    assert released == {"o1": True, "o2": True, "o3": True, "r1": False, "r2": False}


def test_releasing_a_dag_with_nothing_waiting_says_so(tmp_path: Path) -> None:
    """An unknown DAG: 0 released, the DAGs that do wait named, exit 0, nothing changed."""
    path = _sqlite_store(tmp_path)

    result = _cli(tmp_path, f"sqlite:///{path}", "--release", "nope")

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"released 0 deferred requests of nope: none of its requests wait in sqlite:///{path} "
        "(DAGs waiting: etl_orders, reports)\n"
    )
    with SqliteStore(path, RETENTION) as store:
        assert not any(_released(store).values())


def test_a_store_file_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    """No store file yet: nothing is deferred, and the listing creates no file."""
    path = tmp_path / "none.db"

    result = _cli(tmp_path, f"sqlite:///{path}")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"nothing deferred in sqlite:///{path} (MAX_DEFERRED 100000)\n"
    assert not path.exists()


def test_bad_settings_exit_two(tmp_path: Path) -> None:
    """A ``[[dag_limits]]`` entry without a limit is a usage error: exit 2, said on stderr."""
    config = tmp_path / "bad.toml"
    config.write_text('[[dag_limits]]\ndags = ["etl_*"]\n')
    env = {name: value for name, value in os.environ.items() if not name.startswith(PREFIX)}

    result = subprocess.run(
        [sys.executable, "-m", "consumer", "deferred", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert "sets neither max_queued_runs nor rate" in result.stderr


def test_postgres_lists_and_releases_without_showing_the_password(
    tmp_path: Path, new_database: str
) -> None:
    """On PostgreSQL: listing and release work; a password in STORE_URL shows only as ***."""
    secret = "s3cret-" + unique_name("pw")
    url = f"{new_database}?sslmode=disable&password={secret}"
    with PostgresStore(new_database, RETENTION) as store:
        fill_backlog(store)

    listed = _cli(tmp_path, url, "--json")
    released = _cli(tmp_path, url, "--release", "reports", "--json")

    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["total"] == 5
    assert doc["store"].endswith("?sslmode=disable&password=***")
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)["released"] == [{"dag_id": "reports", "released": 2}]
    for result in (listed, released):
        assert secret not in result.stdout + result.stderr
    with PostgresStore(new_database, RETENTION) as store:
        assert _released(store) == {"o1": False, "o2": False, "r1": True, "r2": True}
