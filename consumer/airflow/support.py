"""Which Airflow releases the worker supports: a floor per REST API and the releases CI tests.

The floor is the oldest release whose REST API has every endpoint and field the worker
sends, as Airflow's own OpenAPI spec dates them ("New in version"): on ``/api/v1``,
Airflow 2.6.0 (a run's ``note``, 2.5.0; ``POST .../dagRuns/{id}/clear``, 2.4.0; the
``updated_at_gte`` filter the audit lists by, 2.6.0); on ``/api/v2``, every Airflow 3.
An older release is refused with a ``ConfigError``: the worker would start, then fail
requests one by one. A release at or above the floor that CI does not test (``TESTED``)
is accepted with a warning; so is a version string that does not start with numbers.
"""

from __future__ import annotations

import re

import structlog

from consumer.airflow.runs import ApiVersion
from consumer.errors import ConfigError

log = structlog.get_logger(__name__)

Release = tuple[int, int, int]

FLOOR: dict[ApiVersion, Release] = {"v1": (2, 6, 0), "v2": (3, 0, 0)}
# minor series the compatibility smoke and the suite run (README "Tested versions")
TESTED: frozenset[tuple[int, int]] = frozenset({(2, 10), (2, 11), (3, 1), (3, 2), (3, 3)})

_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_release(version: str) -> Release | None:
    """The leading ``major.minor[.patch]`` of an Airflow version string.

    Args:
        version: what ``/version`` answered (``2.10.5``, ``2.10.3+astro.1``, ``3.1.0rc1``).

    Returns:
        The numbers (patch 0 when absent), or None when the string does not start with them.
    """
    match = _RELEASE.match(version.strip())
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def check_release(api: ApiVersion, version: str | None, base_url: str) -> None:
    """Refuse an Airflow older than the floor of its API; warn about an untested one.

    Args:
        api: the REST API the server serves.
        version: its version string, None when detection did not learn it.
        base_url: the server, for the message.

    Raises:
        ConfigError: the release is older than ``FLOOR[api]``.
    """
    if version is None:
        return
    release = parse_release(version)
    if release is None:
        log.warning("airflow_release_unknown", url=base_url, airflow_version=version)
        return
    if release < FLOOR[api]:
        floor = ".".join(map(str, FLOOR[api]))
        raise ConfigError(
            f"Airflow {version} at {base_url} is not supported: the worker needs Airflow "
            f"{floor} or later on /api/{api} (tested: {describe_tested()}); upgrade Airflow"
        )
    if release[:2] not in TESTED:
        log.warning(
            "airflow_release_untested",
            url=base_url,
            airflow_version=version,
            tested=describe_tested(),
        )


def describe_tested() -> str:
    """The tested minor series, oldest first (``2.10, 2.11, 3.1, ...``)."""
    return ", ".join(f"{major}.{minor}" for major, minor in sorted(TESTED))
