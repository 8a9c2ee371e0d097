"""The floor of a duplicate: the contract's stages on kafka-python, without the worker around them.

Per polled batch: each record through the worker's own ``screen`` (decode with the
duplicate-key refusal, validate, policy) and ``fingerprint``, one store read for the
batch, the stored answer (``judge``, ``stored_outcome``) and its reply record
(``reply_record``), produced with the worker's acked producer; then the acks are awaited
and the batch committed. What it leaves out is the worker's bookkeeping: in-flight slots,
per-record offset tracking, delivery callbacks, metrics and logs. Its CPU per duplicate
beside the passthrough's is what the contract costs with these libraries, whatever the
worker does around it. Run by the benchmark as ``python -m bench.duplicate_floor``.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from bench.baseline_io import (
    AssignmentAnnouncer,
    finish,
    setting,
    stop_on_sigterm,
    subscribed_consumer,
)
from consumer.fingerprint import fingerprint
from consumer.kafka_io.clients import open_acked_producer
from consumer.kafka_io.records import to_inbound
from consumer.limits import Limits
from consumer.pipeline import Refusal, screen
from consumer.pipeline.dedup import ANSWERED, judge, stored_outcome
from consumer.pipeline.policy import Policy
from consumer.pipeline.reply import reply_record
from consumer.store import open_store

WORKER = "duplicate-floor/0"


def main(argv: list[str]) -> int:
    """Answer each polled batch of duplicates from the store until SIGTERM."""
    del argv
    stop = stop_on_sigterm()
    consumer = subscribed_consumer(enable_auto_commit=False)
    producer = open_acked_producer({"bootstrap_servers": setting("KAFKA_BOOTSTRAP_SERVERS")})
    store = open_store(setting("STORE_URL"), timedelta(days=7))
    limits, policy = Limits(), Policy.from_lists(setting("DAG_ALLOWLIST"))
    announcer = AssignmentAnnouncer(consumer)
    replies = setting("REPLY_TOPIC")
    answered = errors = 0
    while not stop.is_set():
        records = [to_inbound(r) for rs in consumer.poll(timeout_ms=200).values() for r in rs]
        screened = [screen(r.value, limits, policy, r.headers) for r in records]
        requests = [
            (r, s, fingerprint(s))
            for r, s in zip(records, screened, strict=True)
            if not isinstance(s, Refusal)
        ]
        entries = store.get_many({s.idempotency_key for _, s, _ in requests}) if requests else {}
        for record, request, own in requests:
            entry = entries.get(request.idempotency_key)
            seen = judge(entry, own, (record.topic, record.partition, record.offset))
            if entry is None or seen not in ANSWERED:
                errors += 1  # not a duplicate: the floor answers only what the store knows
                continue
            outcome = stored_outcome(record, request, entry, seen)
            reply = reply_record(outcome, default_topic=replies, worker=WORKER)
            headers = list(reply.headers)
            producer.send(reply.topic, key=reply.key, value=reply.value, headers=headers)
            answered += 1
        errors += len(records) - len(requests)
        if records:
            producer.flush()  # every reply acknowledged before the commit covers it
            consumer.commit()
        announcer.check()
    store.close()
    return finish(consumer, producer, airflow_calls=0, errors=errors, handled=answered)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
