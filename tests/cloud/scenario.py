"""The end-to-end scenario of each managed-service stand-in: a tracked request, two replies."""

from __future__ import annotations

from typing import Any

from tests.conftest import KafkaCluster, unique_name
from tests.scenarios.harness import (
    Topics,
    WorkerProcess,
    produce,
    read_all,
    replies_by_key,
    request,
)


def tracked_request_round_trip(
    kafka: KafkaCluster, topics: Topics, worker: WorkerProcess, *, key_length: int = 40
) -> list[dict[str, Any]]:
    """Start ``worker``, send one tracked request for ``devstack_plain``, return its replies.

    Args:
        kafka: the broker.
        topics: the worker's topics.
        worker: a worker not yet started.
        key_length: at least this many characters of idempotency key (a long run id).

    Returns:
        The key's replies once there are two (``triggered``, then ``completed``).
    """
    key = unique_name("cloud").ljust(key_length, "k")
    worker.start()
    produce(
        kafka.bootstrap_servers,
        topics.requests,
        [(key.encode(), request(key, dag_id="devstack_plain", track=True), [])],
    )
    records = read_all(kafka.bootstrap_servers, topics.replies, at_least=2, timeout=180)
    replies = replies_by_key(records)[key]
    assert worker.terminate() == 0, worker.tail()
    return replies
