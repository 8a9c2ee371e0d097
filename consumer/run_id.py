"""DAG run ids derived from idempotency keys (spec §3): deterministic and stable forever.

The rule (also in the README, "DAG run ids")::

    key made only of [A-Za-z0-9_.:+-] and at most 241 characters
        → "kafka__" + key
    any other key
        → "kafka__" + sanitised key cut to 224 characters + "~" + 16 hex digits
          sanitised: each run of characters outside [A-Za-z0-9_.:+-] (including "~")
          becomes one "_"; the hex digits are the start of SHA-256(key as UTF-8)

Why it is safe: the result always matches ``[A-Za-z0-9_.~:+-]{1,248}`` (longer ids break
task log paths), starts with ``kafka__`` and so never with a prefix Airflow reserves, and
distinct keys give distinct ids: plain ids never contain "~", hashed ids contain exactly
one, followed by a hash of the whole key. Changing anything here changes the run id of
keys already in flight and breaks deduplication; the golden table in the tests pins it.
"""

from __future__ import annotations

import hashlib
import re

RUN_ID_PREFIX = "kafka__"
MAX_RUN_ID_CHARS = 248
HASH_SEPARATOR = "~"
HASH_CHARS = 16
RUN_ID_PATTERN = r"^[A-Za-z0-9_.~:+-]{1,248}$"
RESERVED_RUN_ID_PREFIXES = ("scheduled__", "backfill__", "asset_triggered__", "dataset_triggered__")

MAX_PLAIN_KEY_CHARS = MAX_RUN_ID_CHARS - len(RUN_ID_PREFIX)
MAX_SANITISED_CHARS = MAX_RUN_ID_CHARS - len(RUN_ID_PREFIX) - len(HASH_SEPARATOR) - HASH_CHARS

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:+-]+")  # the run-id charset minus the separator "~"
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.:+-]+")


def run_id_for(key: str) -> str:
    """Derive the DAG run id an idempotency key maps to.

    Args:
        key: the idempotency key (any non-empty text; the contract allows 1-256
            characters without control characters).

    Returns:
        The DAG run id: ``kafka__<key>`` for short plain keys, otherwise
        ``kafka__<sanitised key>~<hash>``.

    Raises:
        ValueError: when the key is empty.
    """
    if not key:
        raise ValueError("an idempotency key is never empty")
    if len(key) <= MAX_PLAIN_KEY_CHARS and _PLAIN_KEY.fullmatch(key):
        return RUN_ID_PREFIX + key
    sanitised = _UNSAFE_RUN.sub("_", key)[:MAX_SANITISED_CHARS]
    # surrogatepass: total over every str, though valid keys never hold surrogates
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{RUN_ID_PREFIX}{sanitised}{HASH_SEPARATOR}{digest[:HASH_CHARS]}"
