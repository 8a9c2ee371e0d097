"""Which request made a DAG run: its Kafka coordinates, written into the run's conf.

Every run the worker makes carries ``trigger_consumer/source`` in its conf: the topic,
partition and offset of the request whose POST made it, and that request's fingerprint (a
topic deleted and made again restarts its offsets: coordinates alone outlive it). When a
POST meets an existing run (409), the run itself says whether this request made it (an
earlier attempt of its own, or another owner of the same record after a partition moved)
or another request did: no guess from timing or store marks (nemesis seeds 1313, 1515 and
their review). The key is reserved: a request's own value is replaced. It is not part of
the fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias, TypeGuard

SOURCE_CONF_KEY = "trigger_consumer/source"

Source: TypeAlias = tuple[str, int, int, str]
"""A request: its record's (topic, partition, offset) and its fingerprint."""


def with_source(conf: Mapping[str, Any], source: Source) -> dict[str, Any]:
    """The run conf with the request named under ``SOURCE_CONF_KEY``."""
    topic, partition, offset, fingerprint = source
    named = {"topic": topic, "partition": partition, "offset": offset, "fingerprint": fingerprint}
    return {**conf, SOURCE_CONF_KEY: named}


def source_of(conf: object) -> Source | None:
    """The request a run's conf names, or None (a run made otherwise, or before this)."""
    value = conf.get(SOURCE_CONF_KEY) if isinstance(conf, Mapping) else None
    if not isinstance(value, Mapping):
        return None
    topic, partition, offset, fingerprint = (
        value.get(name) for name in ("topic", "partition", "offset", "fingerprint")
    )
    if not isinstance(topic, str) or not _is_int(partition) or not _is_int(offset):
        return None
    return (topic, partition, offset, fingerprint) if isinstance(fingerprint, str) else None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
