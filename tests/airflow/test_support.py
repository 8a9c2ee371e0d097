"""Which Airflow releases the worker accepts: the floor per API and the tested series."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from consumer.airflow.runs import ApiVersion
from consumer.airflow.support import FLOOR, TESTED, check_release, parse_release
from consumer.errors import ConfigError

URL = "http://airflow.example"


@pytest.mark.parametrize(
    ("text", "release"),
    [
        ("2.10.5", (2, 10, 5)),
        ("2.10.3+astro.1", (2, 10, 3)),
        ("2.9.2+composer", (2, 9, 2)),
        ("3.1.0rc1", (3, 1, 0)),
        ("3.2", (3, 2, 0)),
        (" 3.3.2 ", (3, 3, 2)),
        ("main", None),
        ("", None),
    ],
)
def test_parse_release_reads_the_leading_numbers(
    text: str, release: tuple[int, int, int] | None
) -> None:
    """Vendors' suffixes are ignored; a string without leading numbers has no release."""
    assert parse_release(text) == release


@pytest.mark.parametrize("version", ["2.5.3", "2.4.3", "2.3.0", "1.10.15"])
def test_older_than_the_v1_floor_is_a_config_error(version: str) -> None:
    """Below 2.6.0 on /api/v1 the worker refuses, naming the version, server and floor."""
    with pytest.raises(ConfigError) as caught:
        check_release("v1", version, URL)
    assert f"Airflow {version} at {URL} is not supported" in str(caught.value)
    assert "2.6.0 or later on /api/v1" in str(caught.value)


@pytest.mark.parametrize(
    ("api", "version"),
    [("v1", "2.10.5"), ("v1", "2.11.2"), ("v2", "3.1.8"), ("v2", "3.2.2"), ("v2", "3.3.2")],
)
def test_tested_releases_are_accepted_silently(api: ApiVersion, version: str) -> None:
    """Every release series CI tests is accepted without a warning."""
    with capture_logs() as logs:
        check_release(api, version, URL)
    assert logs == []


@pytest.mark.parametrize(
    ("api", "version"), [("v1", "2.6.0"), ("v1", "2.9.3"), ("v2", "3.0.6"), ("v2", "3.4.0")]
)
def test_supported_but_untested_releases_start_with_a_warning(
    api: ApiVersion, version: str
) -> None:
    """At or above the floor but outside the tested series: accepted, logged as untested."""
    with capture_logs() as logs:
        check_release(api, version, URL)
    assert [(e["event"], e["airflow_version"]) for e in logs] == [
        ("airflow_release_untested", version)
    ]
    assert logs[0]["tested"] == "2.10, 2.11, 3.1, 3.2, 3.3"


def test_an_unknown_or_unparsable_version_is_accepted() -> None:
    """No version (a credentialed detection) passes; an odd string passes with a warning."""
    with capture_logs() as logs:
        check_release("v2", None, URL)
        check_release("v1", "unknown", URL)
    assert [e["event"] for e in logs] == ["airflow_release_unknown"]


def test_the_floor_lies_below_every_tested_series() -> None:
    """No tested release would be refused: each tested series is at or above its API's floor."""
    for major, minor in TESTED:
        api = "v1" if major == 2 else "v2"
        assert (major, minor, 0) >= FLOOR[api]
