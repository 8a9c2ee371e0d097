"""Which offsets ``--repair`` reads again (pure); the re-drive itself: tests/cli/test_audit.py."""

from __future__ import annotations

from consumer.audit.repair import ranges_of
from consumer.replay import OffsetRange


def test_ranges_cover_every_place_per_partition() -> None:
    """One range per partition, from its lowest to just past its highest offset."""
    places = [("t", 0, 5), ("t", 1, 2), ("t", 0, 9), ("t", 0, 7)]
    assert ranges_of(places) == {0: OffsetRange(5, 10), 1: OffsetRange(2, 3)}


def test_no_places_no_ranges() -> None:
    """Nothing to repair reads nothing."""
    assert ranges_of([]) == {}
