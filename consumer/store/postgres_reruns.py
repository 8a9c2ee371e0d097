"""Re-run marks in PostgreSQL: claim, record, and the deletions that forget them with their keys.

``PostgresStore`` runs these; each is one statement in autocommit (data-modifying ``WITH``
clauses where a call writes both tables), so each is atomic on its own. A mark lives and
dies with its key's entry by the rules ``sqlite_reruns`` draws: the marks written in an
entry's life (before ``created_at + retention``) are hidden once it expires and deleted
with it; a mark older than the retention window is hidden, and purged once its key has no
entry. Parameters are named; ``params`` builds a mark's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from consumer.store.entry import Coordinates, RequestOrigin, RerunStatus
from consumer.store.postgres_schema import ORIGIN_COLUMNS, RERUNS, TABLE, origin_params
from consumer.store.recording import RUN_TRACKING
from consumer.store.rows import RERUN_COLUMNS

_NAMES = tuple(name.strip() for name in RERUN_COLUMNS.split(","))
_LIVE = (
    f"r.created_at >= %(cutoff)s AND NOT EXISTS (SELECT 1 FROM {TABLE} i WHERE i.key = r.key"  # noqa: S608 -- constants
    " AND i.created_at < %(cutoff)s AND r.created_at < i.created_at + %(retention)s)"
)


def _insert(status: RerunStatus) -> str:
    values = ", ".join(
        f"'{status.value}'" if name == "status" else f"%({name})s" for name in _NAMES
    )
    return (
        f"INSERT INTO {RERUNS} AS r ({RERUN_COLUMNS}) VALUES ({values})"  # noqa: S608 -- constants
        " ON CONFLICT (key, rerun_id)"
    )


SELECT = (
    f"SELECT {RERUN_COLUMNS} FROM {RERUNS} r"  # noqa: S608 -- constants
    f" WHERE r.key = %(key)s AND r.rerun_id = %(rerun_id)s AND {_LIVE}"
)
# The claim writes over a dead mark only, and returns a row only when it wrote one: no row
# means a live holder, which SELECT then reads (also when a concurrent claim won the race).
MARK = (
    f"{_insert(RerunStatus.PENDING)} DO UPDATE SET"
    f" {', '.join(f'{name} = EXCLUDED.{name}' for name in _NAMES[2:])}"
    f" WHERE NOT ({_LIVE}) RETURNING {RERUN_COLUMNS}"
)
# Done: a live mark keeps its evidence and age. With %(track)s the key's live entry is
# tracked again from scratch (its old lease ends, so its holder cannot complete it) for the
# re-run request's origin; the UPDATE sees the entry as it was before the statement.
_DONE = ", ".join(
    [
        *(
            f"{name} = EXCLUDED.{name}"
            for name in _NAMES[2:]
            if name not in ("evidence", "created_at")
        ),
        f"evidence = CASE WHEN {_LIVE} THEN r.evidence END",
        f"created_at = CASE WHEN {_LIVE} THEN r.created_at ELSE EXCLUDED.created_at END",
    ]
)
_RETRACK = ", ".join(
    [
        # created_at too: the re-run's run is tracked (horizon) and kept (retention) from now
        "track = true, run_state = %(run_state)s, updated_at = %(now)s, created_at = %(now)s",
        *(f"{name} = NULL" for name in RUN_TRACKING),
        *(f"{name} = %(origin_{name})s" for name in ORIGIN_COLUMNS),
    ]
)
RECORD = (
    f"WITH done AS ({_insert(RerunStatus.DONE)} DO UPDATE SET {_DONE})"  # noqa: S608 -- constants
    f" UPDATE {TABLE} t SET {_RETRACK}"
    " WHERE %(track)s AND t.key = %(key)s AND t.created_at >= %(cutoff)s"
)

RELEASE = (
    f"WITH forgotten AS (DELETE FROM {RERUNS} WHERE key = %(key)s)"  # noqa: S608 -- constants
    f" DELETE FROM {TABLE} WHERE key = %(key)s"
)
FORGET_ENDED_LIFE = (
    f"WITH forgotten AS (DELETE FROM {RERUNS} r USING {TABLE} i"  # noqa: S608 -- constants
    " WHERE r.key = %(key)s AND i.key = %(key)s AND i.created_at < %(cutoff)s"
    " AND r.created_at < i.created_at + %(retention)s) "
)
"""The prefix of ``mark_pending`` and ``record``: over an expired entry, drop its life's marks."""

# marks older than the cut-off whose key has no entry (none followed them, or a replica of the
# previous release deleted it); the NOT EXISTS sees the entries ``gone`` deletes in the same
# statement, so their marks are ``forgotten``'s alone
_ORPHANS = (
    f"SELECT key, rerun_id FROM {RERUNS} o WHERE o.created_at < %(cutoff)s"  # noqa: S608 -- constants
    f" AND NOT EXISTS (SELECT 1 FROM {TABLE} i WHERE i.key = o.key)"
)


def _purge(entries: str, orphans: str) -> str:
    return (
        f"WITH gone AS (DELETE FROM {TABLE} WHERE {entries} RETURNING key, created_at),"  # noqa: S608 -- constants
        f" forgotten AS (DELETE FROM {RERUNS} r USING gone WHERE r.key = gone.key"
        " AND r.created_at < gone.created_at + %(retention)s),"
        f" orphaned AS (DELETE FROM {RERUNS} WHERE (key, rerun_id) IN ({orphans}))"
    )


PURGE = _purge("created_at < %(cutoff)s", _ORPHANS)
"""``purge``'s ``WITH`` clauses: ``gone`` (the entries deleted), then their marks' deletions.

``postgres_refusals`` completes them into one statement that also counts ``gone``.
"""
# replicas purging at once skip each other's rows
PURGE_EXPIRED = _purge(
    f"key IN (SELECT key FROM {TABLE} WHERE created_at < %(cutoff)s"  # noqa: S608 -- constants
    " LIMIT %(batch)s FOR UPDATE SKIP LOCKED)",
    f"{_ORPHANS} LIMIT %(batch)s FOR UPDATE SKIP LOCKED",
)
"""``PURGE`` bounded to %(batch)s entries (and orphaned marks)."""


def params(
    key: str,
    rerun_id: str,
    *,
    now: datetime,
    retention: timedelta,
    at: Coordinates | None = None,
    evidence: str | None = None,
    run_state: str | None = None,
    track: bool = False,
    origin: RequestOrigin | None = None,
) -> dict[str, Any]:
    """Return the named parameters of a mark's statements.

    Args:
        key: the idempotency key.
        rerun_id: the re-run's id.
        now: the call's time (the mark's ``created_at`` if it writes one).
        retention: the retention window.
        at: the request record's (topic, partition, offset), when the call writes.
        evidence: the clear evidence the call writes.
        run_state: the run state the call writes.
        track: whether ``RECORD`` tracks the key's run again.
        origin: the origin ``RECORD`` gives the key's entry with ``track``.

    Returns:
        Parameter name to value.
    """
    topic, partition, offset = (None, None, None) if at is None else at
    origin_values = {f"origin_{name}": value for name, value in origin_params(origin).items()}
    return {
        **origin_values,
        "key": key,
        "rerun_id": rerun_id,
        "evidence": evidence,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "run_state": run_state,
        "created_at": now,
        "now": now,
        "cutoff": now - retention,
        "retention": retention,
        "track": track,
    }
