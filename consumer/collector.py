"""Tune CPython's cyclic garbage collector for a worker that allocates per message.

Every request allocates a few dozen short-lived containers (decoded JSON, models, records,
futures), and up to ``MAX_IN_FLIGHT`` requests stay alive at once. At CPython's default
first threshold (700 allocations) many of them outlive a young collection and pile up in
the older generations, and full collections over the whole heap follow again and again:
measured in process, a quarter of a replayed duplicate's CPU (issue 16). A
higher first threshold lets them die young; freezing what startup built (modules, pydantic
schemas, clients) keeps it out of every later collection. Reference counting still frees
everything at once; only garbage in reference cycles waits a little longer.
"""

from __future__ import annotations

import gc

# young-generation collections every this many net allocations (CPython's default: 700);
# the older generations keep their defaults (10, 10)
YOUNG_THRESHOLD = 10_000


def tune_for_worker() -> None:
    """Raise the young generation's threshold and freeze what exists now (call once started)."""
    _, middle, old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
