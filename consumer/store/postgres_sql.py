"""The PostgreSQL store's composed statements: claim, record, lease, renew, complete, abandon.

``PostgresStore`` runs them; each is one statement in autocommit, so each is atomic on its own.
Parameters are named (``%(key)s``); ``ALL_COLUMNS`` lists the full row's.
"""

from __future__ import annotations

from consumer.store.postgres_reruns import FORGET_ENDED_LIFE
from consumer.store.postgres_schema import COLUMNS, ENTRY_COLUMNS, TABLE
from consumer.store.recording import RUN_TRACKING

ALL_COLUMNS = (*ENTRY_COLUMNS, "lease_owner", "lease_until", "leased_at")
_VALUES = ", ".join(f"%({name})s" for name in ALL_COLUMNS)
LIVE = "t.created_at >= %(cutoff)s"

# One statement claims a key or returns the live holder (never a second round trip):
# on conflict every column keeps its value unless the holder expired; RETURNING then
# gives the row that holds the key, also when a concurrent claim won the race. A claim or a
# record over an expired entry starts the key's next life: FORGET_ENDED_LIFE drops its marks.
_KEEP_LIVE = ", ".join(
    f"{name} = CASE WHEN {LIVE} THEN t.{name} ELSE EXCLUDED.{name} END" for name in ALL_COLUMNS[1:]
)
MARK_PENDING = (
    f"{FORGET_ENDED_LIFE}INSERT INTO {TABLE} AS t ({', '.join(ALL_COLUMNS)}) VALUES ({_VALUES})"  # noqa: S608 -- constants
    f" ON CONFLICT (key) DO UPDATE SET {_KEEP_LIVE} RETURNING {COLUMNS}"
)

# record(): see consumer.store.recording, whose may_overwrite this WHERE-less CASE mirrors
_OVERWRITE = (
    f"(NOT {LIVE} OR %(status)s::text = 'triggered' OR t.source_topic IS NULL"
    " OR EXCLUDED.source_topic IS NULL OR (t.source_topic = EXCLUDED.source_topic"
    " AND t.source_partition = EXCLUDED.source_partition"
    " AND t.source_offset = EXCLUDED.source_offset))"
)
# ... and whose records_run and kept_for_run these mirror: a run recorded again keeps its
# tracking, the completed run's final state and a triggered status
_SAME_RUN = f"({LIVE} AND t.status <> 'pending' AND t.dag_run_id = EXCLUDED.dag_run_id)"
_KEPT_FOR_RUN = {
    **dict.fromkeys(RUN_TRACKING, _SAME_RUN),
    "run_state": f"({_SAME_RUN} AND t.completed_at IS NOT NULL)",
    "status": f"({_SAME_RUN} AND t.status = 'triggered')",
}
_RECORD_SET = ", ".join(
    f"{name} = CASE WHEN {_OVERWRITE}"
    + (f" AND NOT {_KEPT_FOR_RUN[name]}" if name in _KEPT_FOR_RUN else "")
    + f" THEN EXCLUDED.{name} ELSE t.{name} END"
    for name in ALL_COLUMNS[1:]
    if name != "created_at"
)
RECORD = (
    f"{FORGET_ENDED_LIFE}INSERT INTO {TABLE} AS t ({', '.join(ALL_COLUMNS)}) VALUES ({_VALUES})"  # noqa: S608 -- constants
    f" ON CONFLICT (key) DO UPDATE SET {_RECORD_SET},"
    f" created_at = CASE WHEN {LIVE} THEN t.created_at ELSE EXCLUDED.created_at END"
    f" RETURNING {COLUMNS}"
)

TRACKED = (
    "track AND completed_at IS NULL AND abandoned_at IS NULL"
    " AND status <> 'pending' AND created_at >= %(cutoff)s"
)
# Leases are timed by the server's clock, so that replicas whose clocks disagree still agree
# on when one ends; clock_timestamp(), not now(): a statement that waited for a row lock
# counts from when it got it, not from when it began.
LEASE = (
    f"UPDATE {TABLE} SET lease_owner = %(owner)s,"  # noqa: S608 -- constants
    " lease_until = clock_timestamp() + %(ttl)s, leased_at = clock_timestamp()"
    f" WHERE key IN (SELECT key FROM {TABLE} WHERE {TRACKED}"
    " AND (lease_until IS NULL OR lease_until < clock_timestamp() OR lease_owner = %(owner)s)"
    " ORDER BY leased_at NULLS FIRST, created_at, key LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    f" RETURNING {COLUMNS}"
)
# The fence: the owner column is the token. Another replica becomes owner only through
# LEASE, which takes expired leases alone, and this UPDATE checks and extends under the
# row lock, so a key it returns cannot be taken over before the new lease_until.
RENEW = (
    f"UPDATE {TABLE} SET lease_until = GREATEST(lease_until, clock_timestamp() + %(ttl)s)"  # noqa: S608 -- constants
    f" WHERE key = ANY(%(keys)s) AND lease_owner = %(owner)s AND {TRACKED}"
    f" RETURNING {COLUMNS}"
)
TRACKED_RUNS = (
    f"SELECT {COLUMNS} FROM {TABLE} WHERE {TRACKED}"  # noqa: S608 -- constants
    " ORDER BY created_at, key LIMIT %(limit)s"
)
HELD_BY = "(%(owner)s::text IS NULL OR t.lease_owner = %(owner)s)"
# a tracked run seen final, or given up: either ends its lease (%(owner)s None: whoever holds it)
COMPLETE = (
    f"UPDATE {TABLE} t SET run_state = %(state)s, completed_at = %(now)s,"  # noqa: S608 -- constants
    " updated_at = %(now)s, lease_owner = NULL, lease_until = NULL"
    f" WHERE key = %(key)s AND {LIVE} AND {HELD_BY}"
)
ABANDON = (
    f"UPDATE {TABLE} t SET abandoned_at = %(now)s, updated_at = %(now)s,"  # noqa: S608 -- constants
    " lease_owner = NULL, lease_until = NULL"
    f" WHERE key = %(key)s AND {LIVE} AND {HELD_BY}"
)
RELEASE_LEASES = (
    f"UPDATE {TABLE} SET lease_owner = NULL, lease_until = NULL"  # noqa: S608 -- constants
    " WHERE lease_owner = %(owner)s"
)
