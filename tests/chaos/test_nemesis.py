"""The nemesis on the real stack: a seeded schedule of faults against mixed traffic (issue 28).

``CHAOS_SEED`` and ``CHAOS_MINUTES`` (``make chaos SEED=… MINUTES=…``) choose the seed and
the minutes of faults, split 70/30 between the PostgreSQL fleet and the SQLite replica. A
failure prints the seed, the fault timeline and each violated invariant with its keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import trial
from tests.chaos.checker import check
from tests.chaos.nemesis import ADD, FAULT_KINDS, READ_ONLY_STORE
from tests.chaos.targets import PostgresFaults, SqliteFaults

SEED = int(os.environ.get("CHAOS_SEED", "20261207"))
MINUTES = float(os.environ.get("CHAOS_MINUTES", "2"))
POSTGRES_SHARE = 0.7
# the schedule, quiescence, recording and start-up, with room to spare
TIMEOUT = int(MINUTES * 60 + 2 * trial.QUIESCE_TIMEOUT + 600)


def _verdict(outcome: trial.Outcome) -> None:
    """Fail with the report when the history breaks an invariant (print it either way)."""
    violations = check(outcome.history)
    message = trial.report(outcome, violations, MINUTES)
    print(message)
    assert not violations, message


@pytest.mark.timeout(TIMEOUT)
def test_nemesis_against_replicas_on_postgres(
    chaos_stage: trial.StageFactory, new_database: str, postgres_store_url: str
) -> None:
    """1-3 replicas on PostgreSQL under the seed's faults: the history breaks no invariant."""
    stage = chaos_stage(PostgresFaults(new_database, postgres_store_url), new_database)
    plan = trial.Plan(
        seed=SEED,
        seconds=MINUTES * 60 * POSTGRES_SHARE,
        store="postgres",
        replicas=1 + SEED % 2,
        max_replicas=3,
    )
    _verdict(trial.run(stage, plan))


@pytest.mark.timeout(TIMEOUT)
def test_nemesis_against_one_replica_on_sqlite(
    chaos_stage: trial.StageFactory, tmp_path: Path
) -> None:
    """One replica on SQLite under the seed's faults: the history breaks no invariant."""
    store = tmp_path / "store.db"
    stage = chaos_stage(SqliteFaults(store), f"sqlite:///{store}")
    plan = trial.Plan(
        seed=SEED + 1,
        seconds=MINUTES * 60 * (1 - POSTGRES_SHARE),
        store="sqlite",
        faults=frozenset(FAULT_KINDS) - {ADD, READ_ONLY_STORE},
    )
    _verdict(trial.run(stage, plan))
