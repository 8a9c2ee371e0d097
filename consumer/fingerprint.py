"""Request fingerprints: what makes two requests under one key "the same request" (spec §3).

Same key with a different fingerprint is ``idempotency_key_reused``. The fingerprint
covers exactly ``dag_id``, ``conf``, ``logical_date``, ``note`` and ``not_before`` (only
when set: fingerprints stored before it existed stay equal); routing and tracking fields
(``correlation_id``, ``reply_topic``, ``track``) may differ between redeliveries. It is
stored, so its encoding is stable: canonical JSON (sorted keys at every level, no
whitespace, UTF-8, instants in UTC) hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

from consumer.contract import TriggerRequest

FINGERPRINT_PREFIX = "sha256:"
# built once: ``json.dumps`` with options builds an encoder per call
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def fingerprint(request: TriggerRequest) -> str:
    """Compute the canonical fingerprint of a request.

    Args:
        request: a validated request.

    Returns:
        ``"sha256:"`` plus 64 hex digits; equal for requests that differ only in key order,
        whitespace, the zone ``logical_date`` was written in, or non-fingerprinted fields.
    """
    logical_date = request.logical_date
    canonical = {
        "conf": request.conf,
        "dag_id": request.dag_id,
        "logical_date": None if logical_date is None else logical_date.astimezone(UTC).isoformat(),
        "note": request.note,
    }
    if request.not_before is not None:
        canonical["not_before"] = request.not_before.astimezone(UTC).isoformat()
    text = _CANONICAL.encode(canonical)
    digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()
    return FINGERPRINT_PREFIX + digest
