"""Tests of consumer/provenance.py: the run's conf names the request that made it."""

from __future__ import annotations

import pytest

from consumer.provenance import SOURCE_CONF_KEY, source_of, with_source


def test_the_source_round_trips_and_replaces_a_requests_own_value() -> None:
    """What ``with_source`` writes, ``source_of`` reads; a request cannot forge it."""
    conf = with_source({"a": 1, SOURCE_CONF_KEY: "forged"}, ("requests", 4, 68, "sha256:ab"))
    assert conf["a"] == 1
    assert source_of(conf) == ("requests", 4, 68, "sha256:ab")


@pytest.mark.parametrize(
    "conf",
    [
        None,
        {},
        {SOURCE_CONF_KEY: "requests/4/68"},
        {SOURCE_CONF_KEY: {"topic": "t", "partition": True, "offset": 1}},
        {SOURCE_CONF_KEY: {"topic": 7, "partition": 0, "offset": 1}},
        {SOURCE_CONF_KEY: {"topic": "t", "partition": 0}},
        {SOURCE_CONF_KEY: {"topic": "t", "partition": 0, "offset": 1}},  # no fingerprint
    ],
)
def test_a_run_that_names_no_readable_source_names_none(conf: object) -> None:
    """Runs made otherwise (or by an older release) fall back to the judgement's guess."""
    assert source_of(conf) is None
