"""Remembered refusals in PostgreSQL: written by a key's release, purged by their own age.

``PostgresStore`` runs these; each is one statement in autocommit (data-modifying ``WITH``
clauses where a call writes several tables), so each is atomic on its own. The rules are
``sqlite_refusals``': a refusal outlives its key's entry, is hidden once older than the
retention window and purged then. Parameters are named; ``params`` builds them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, LiteralString

from consumer.store.entry import Coordinates, RememberedRefusal
from consumer.store.postgres_reruns import PURGE as PURGE_ENTRIES
from consumer.store.postgres_reruns import PURGE_EXPIRED as PURGE_EXPIRED_ENTRIES
from consumer.store.postgres_reruns import RELEASE
from consumer.store.postgres_schema import REFUSALS, RERUNS, TABLE
from consumer.store.rows import REFUSAL_COLUMNS, details_text

_NAMES = tuple(name.strip() for name in REFUSAL_COLUMNS.split(","))
_AT = (
    "key = %(key)s AND source_topic = %(source_topic)s"
    " AND source_partition = %(source_partition)s AND source_offset = %(source_offset)s"
)
_PRIMARY_KEY = "(key, source_topic, source_partition, source_offset)"

SELECT = (
    f"SELECT {REFUSAL_COLUMNS} FROM {REFUSALS}"  # noqa: S608 -- constants
    f" WHERE {_AT} AND created_at >= %(cutoff)s"
)
# the second answer for one record wins, and its created_at starts the window anew
RELEASE_REMEMBERING = (
    f"WITH remembered AS (INSERT INTO {REFUSALS} ({REFUSAL_COLUMNS})"  # noqa: S608 -- constants
    f" VALUES ({', '.join(f'%({name})s' for name in _NAMES)}) ON CONFLICT {_PRIMARY_KEY}"
    f" DO UPDATE SET {', '.join(f'{name} = EXCLUDED.{name}' for name in _NAMES[4:])}),"
    f" forgotten AS (DELETE FROM {RERUNS} WHERE key = %(key)s)"
    f" DELETE FROM {TABLE} WHERE key = %(key)s"
)
"""``release`` with a refusal: ``postgres_reruns.RELEASE`` plus the upsert, one statement."""

_COUNT = " SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM refused)"
PURGE = (
    f"{PURGE_ENTRIES}, refused AS (DELETE FROM {REFUSALS}"  # noqa: S608 -- constants
    f" WHERE created_at < %(cutoff)s RETURNING 1){_COUNT}"
)
"""``purge``: the entries with their marks, and the refusals, created before %(cutoff)s."""
# the refusals fill what the entries left of the batch; replicas skip each other's rows
PURGE_EXPIRED = (
    f"{PURGE_EXPIRED_ENTRIES}, refused AS (DELETE FROM {REFUSALS}"  # noqa: S608 -- constants
    f" WHERE {_PRIMARY_KEY} IN (SELECT {_PRIMARY_KEY.strip('()')} FROM {REFUSALS}"
    " WHERE created_at < %(cutoff)s LIMIT (SELECT %(batch)s - count(*) FROM gone)"
    f" FOR UPDATE SKIP LOCKED) RETURNING 1){_COUNT}"
)
"""``purge_expired``: at most %(batch)s rows, entries first, then refusals."""


def release(
    key: str, refusal: RememberedRefusal | None, *, now: datetime
) -> tuple[LiteralString, dict[str, Any]]:
    """Return the statement and parameters of ``key``'s release, remembering ``refusal``.

    Args:
        key: the idempotency key.
        refusal: the answer of the record that releases the key, or None; its
            ``created_at`` is replaced by ``now``.
        now: the call's time.

    Returns:
        ``RELEASE_REMEMBERING`` with its parameters, or ``RELEASE`` without a refusal.

    Raises:
        ValueError: ``refusal`` names another key.
        TypeError: its details are not JSON-serializable.
    """
    if refusal is None:
        return RELEASE, {"key": key}
    if refusal.key != key:
        raise ValueError(f"refusal of {refusal.key!r} given to the release of {key!r}")
    values = params(key, refusal.at, cutoff=now)
    values.update(
        code=refusal.code, message=refusal.message, details=details_text(refusal), created_at=now
    )
    return RELEASE_REMEMBERING, values


def params(key: str, at: Coordinates, *, cutoff: datetime) -> dict[str, Any]:
    """Return the named parameters that find the refusal of ``key`` at ``at``.

    Args:
        key: the idempotency key.
        at: the record's (topic, partition, offset).
        cutoff: the retention cut-off: older refusals are dead.

    Returns:
        Parameter name to value.
    """
    topic, partition, offset = at
    return {
        "key": key,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "cutoff": cutoff,
    }
