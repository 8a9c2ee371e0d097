"""The worker's garbage-collector tuning (consumer/collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consumer.collector import YOUNG_THRESHOLD, tune_for_worker


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """Give the process its collector settings back after the test."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_raises_only_the_young_threshold_and_freezes_the_startup_heap() -> None:
    """Young collections come at YOUNG_THRESHOLD; older generations keep their thresholds."""
    _, middle, old = gc.get_threshold()
    tune_for_worker()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 0  # what existed at the call is out of later collections
