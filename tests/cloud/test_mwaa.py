"""AIRFLOW_AUTH=mwaa against the InvokeRestApi stand-in in front of each real Airflow.

The client's contract through ``consumer/airflow/mwaa.py``: every call signed with SigV4 and
checked by botocore's own signer, every ``Path`` within 64 characters (long run ids read
through a listing, cleared through ``clearTaskInstances``), and MWAA's failures mapped so the
client's promises hold: a lost answer counts as may-have-reached, throttling is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from consumer.airflow import AirflowClient, RetryPolicy
from consumer.airflow.clearing import RunClearing
from consumer.diagnostics.airflow_checks import airflow_checks
from consumer.errors import AirflowError, ConfigError, ErrorCode
from consumer.settings import load_settings
from devstack.airflow import AirflowServer
from tests.cloud.conftest import MWAA_URL, long_run_id
from tests.cloud.mwaa_standin import ENVIRONMENT, SECRET_KEY, MwaaStandIn
from tests.cloud.scenario import tracked_request_round_trip
from tests.conftest import KafkaCluster
from tests.scenarios.harness import Topics, WorkerProcess
from tests.waiting import wait_until

FAST_RETRY = RetryPolicy(base=0.05, factor=2.0, max_delay=0.2, jitter=False, max_attempts=5)
MWAA_PATH_LIMIT = 64

MwaaClient = Callable[..., AirflowClient]


def test_trigger_duplicate_and_read_through_invoke_rest_api(
    mwaa: MwaaStandIn, mwaa_client: MwaaClient, airflow: AirflowServer
) -> None:
    """A run is made once, its duplicate found by a listing, and no Path passes 64 characters."""
    client = mwaa_client()
    run_id = long_run_id()

    made = client.trigger("devstack_plain", run_id, conf={"n": 1})
    again = client.trigger("devstack_plain", run_id, conf={"n": 1})
    read = client.get_run("devstack_plain", run_id)

    assert client.api_version == airflow.api_version
    assert (made.created, again.created) == (True, False)
    assert again.dag_run_id == made.dag_run_id == run_id
    assert read is not None and read.dag_run_id == run_id
    assert made.run_url.startswith(MWAA_URL)
    assert client.get_run("devstack_plain", run_id + "-absent") is None
    assert mwaa.bad_signatures == 0
    paths = mwaa.paths()
    assert max(len(path) for path in paths) <= MWAA_PATH_LIMIT
    assert not any(path.startswith("/api/") for path in paths)
    assert "/dags/devstack_plain/dagRuns" in paths  # the trigger and the listings


def test_refusals_keep_their_codes(mwaa: MwaaStandIn, mwaa_client: MwaaClient) -> None:
    """An unknown DAG is dag_not_found, a conf breaking the DAG's params airflow_rejected."""
    client = mwaa_client()
    with pytest.raises(AirflowError) as unknown:
        client.trigger("devstack_absent_dag", long_run_id())
    with pytest.raises(AirflowError) as bad_params:
        client.trigger("devstack_params", long_run_id(), conf={"n": "not a number"})

    assert unknown.value.code is ErrorCode.DAG_NOT_FOUND
    assert bad_params.value.code is ErrorCode.AIRFLOW_REJECTED
    assert bad_params.value.details["status"] == 400
    assert mwaa.bad_signatures == 0


def test_tracking_lists_the_ended_run(mwaa: MwaaStandIn, mwaa_client: MwaaClient) -> None:
    """A run that ends shows in the tracking listing and in a read of its long id."""
    client = mwaa_client()
    run_id = long_run_id()
    since = datetime.now(UTC) - timedelta(minutes=1)
    client.trigger("devstack_plain", run_id)

    def ended() -> bool:
        listing = client.ended_runs(["devstack_plain"], since)
        return listing is not None and any(r.dag_run_id == run_id for r in listing.runs)

    wait_until(ended, timeout=120, interval=1, what=f"run {run_id} listed as ended")
    run = client.get_run("devstack_plain", run_id)
    assert run is not None and run.state == "success"


def test_rerun_of_a_long_run_id_clears_it(mwaa: MwaaStandIn, mwaa_client: MwaaClient) -> None:
    """A failed run whose clear path passes 64 characters is cleared and then succeeds."""
    client = mwaa_client()
    run_id = long_run_id()
    client.trigger("devstack_flaky", run_id)
    wait_until(
        lambda: _state(client, "devstack_flaky", run_id) == "failed",
        timeout=120,
        interval=1,
        what="the flaky run failing",
    )
    clearing = RunClearing(client)
    before = clearing.clock("devstack_flaky", run_id)

    after = clearing.ensure_cleared(
        "devstack_flaky", run_id, before.clock, only_failed=False, owned=lambda: True
    )

    assert after.cleared
    assert "/dags/devstack_flaky/clearTaskInstances" in mwaa.paths()
    wait_until(
        lambda: _state(client, "devstack_flaky", run_id) == "success",
        timeout=120,
        interval=1,
        what="the cleared run succeeding",
    )


def test_lost_answer_counts_as_may_have_reached(mwaa: MwaaStandIn, mwaa_client: MwaaClient) -> None:
    """A trigger MWAA forwarded but whose answer timed out is found and counted as maybe ours."""
    client = mwaa_client(read_timeout=2.0, retry=FAST_RETRY)
    run_id = long_run_id()
    mwaa.hang_after_next_trigger()

    result = client.trigger("devstack_plain", run_id)

    assert mwaa.forwarded_triggers == 1
    assert result.created is False  # the retry met the run the lost POST made: 409
    assert result.may_have_reached is True  # so the pipeline counts it as this request's
    assert result.dag_run_id == run_id


def test_internal_error_after_forwarding_counts_as_may_have_reached(
    mwaa: MwaaStandIn, mwaa_client: MwaaClient
) -> None:
    """MWAA's InternalServerException is retried and may have reached Airflow (502)."""
    client = mwaa_client(retry=FAST_RETRY)
    mwaa.fail_after_next_trigger()

    result = client.trigger("devstack_plain", long_run_id())

    assert (result.created, result.may_have_reached) == (False, True)


def test_throttling_is_retried_and_reached_nothing(
    mwaa: MwaaStandIn, mwaa_client: MwaaClient
) -> None:
    """ThrottlingException is retried like a 429; a throttled POST did not reach Airflow."""
    client = mwaa_client(retry=FAST_RETRY)
    assert client.api_version  # detection before the throttling starts
    mwaa.throttle(2)

    result = client.trigger("devstack_plain", long_run_id())

    assert (result.created, result.may_have_reached, result.attempts) == (True, False, 3)


def test_aws_refusals_stop_the_worker(
    mwaa: MwaaStandIn, mwaa_client: MwaaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IAM's denial, a wrong secret key, no credentials and no such environment are ConfigErrors."""
    with pytest.raises(ConfigError, match="airflow:InvokeRestApi"):
        mwaa.deny()
        mwaa_client().trigger("devstack_plain", long_run_id())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-secret")
    with pytest.raises(ConfigError, match="refused"):
        mwaa_client().ping()
    assert mwaa.bad_signatures == 1  # the stand-in's signer really checks
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    with pytest.raises(ConfigError, match="no environment"):
        mwaa_client(mwaa_environment=ENVIRONMENT + "-other").ping()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="credentials"):
        mwaa_client().ping()


def test_no_secret_in_repr_errors_or_logs(
    mwaa: MwaaStandIn, mwaa_client: MwaaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AWS secret key shows in no repr, error or log line of a failing client."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    client = mwaa_client()
    mwaa.deny()
    with structlog.testing.capture_logs() as logs, pytest.raises(ConfigError) as refused:
        client.trigger("devstack_plain", long_run_id())
    text = f"{client!r} {client.transport!r} {refused.value} {refused.value!r} {logs}"
    assert SECRET_KEY not in text
    assert "standin-environment" in repr(
        client.transport._session.get_adapter(f"{MWAA_URL}/api/v2/dags")
    )


def test_worker_end_to_end_through_mwaa(
    mwaa: MwaaStandIn,
    airflow: AirflowServer,
    kafka: KafkaCluster,
    cloud_topics: Topics,
    cloud_worker: Callable[..., WorkerProcess],
) -> None:
    """A tracked request through the worker gets `triggered` and `completed` over MWAA."""
    env = mwaa.aws_env(
        TRIGGER_CONSUMER_AIRFLOW_AUTH="mwaa",
        TRIGGER_CONSUMER_MWAA_ENVIRONMENT=ENVIRONMENT,
        TRIGGER_CONSUMER_AIRFLOW_URL=MWAA_URL,
    )
    worker = cloud_worker(airflow, env)

    replies = tracked_request_round_trip(kafka, cloud_topics, worker)

    assert [r["status"] for r in replies] == ["triggered", "completed"]
    assert replies[1]["run_state"] == "success"
    assert replies[0]["run_url"].startswith(MWAA_URL)
    assert mwaa.bad_signatures == 0
    assert max(len(path) for path in mwaa.paths()) <= MWAA_PATH_LIMIT


def _state(client: AirflowClient, dag_id: str, run_id: str) -> str | None:
    run = client.get_run(dag_id, run_id)
    return None if run is None else run.state


def test_doctor_names_the_mode_and_what_is_missing(
    mwaa: MwaaStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Doctor shows auth mwaa when it works, and says what to check when AWS credentials lack."""
    settings = load_settings(
        airflow_url=MWAA_URL,
        airflow_auth="mwaa",
        mwaa_environment=ENVIRONMENT,
        dag_allowlist="devstack_*",
    )
    reached, credentials, *_ = airflow_checks(settings, timeout=5)
    assert reached.ok and "auth mwaa" in reached.detail
    assert credentials.ok and f"MWAA environment {ENVIRONMENT}" in credentials.detail

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    failed, *rest = airflow_checks(settings, timeout=5)
    assert not failed.ok and "credentials" in failed.detail
    assert "airflow:InvokeRestApi" in (failed.remedy or "")
    assert all(not result.ok for result in rest)
    with pytest.raises(ConfigError, match="mwaa_environment"):
        load_settings(airflow_url=MWAA_URL, airflow_auth="mwaa")
