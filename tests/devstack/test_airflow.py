"""The devstack Airflows are real: runs execute to success or failure; the API can go away."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import requests

from devstack import Stack
from devstack.airflow import AirflowServer, wait_for_run
from devstack.tls import issue_tls


def _trigger(server: AirflowServer, dag_id: str) -> str:
    run_id = f"devstack-test-{uuid.uuid4().hex[:12]}"
    body: dict[str, object] = {"dag_run_id": run_id, "conf": {}}
    if server.major == "3":
        body["logical_date"] = None  # required by Airflow 3, rejected as null by Airflow 2
    answer = server.session().post(
        f"{server.url}/api/{server.api_version}/dags/{dag_id}/dagRuns", json=body, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return run_id


def test_triggered_run_reaches_success(airflow: AirflowServer) -> None:
    """A run of the plain DAG, triggered through raw REST, ends in `success`."""
    run_id = _trigger(airflow, "devstack_plain")
    assert wait_for_run(airflow, "devstack_plain", run_id, timeout=180)["state"] == "success"


def test_failing_dag_reaches_failed(airflow: AirflowServer) -> None:
    """A run of the failing DAG ends in `failed`."""
    run_id = _trigger(airflow, "devstack_fails")
    assert wait_for_run(airflow, "devstack_fails", run_id, timeout=180)["state"] == "failed"


def test_paused_dag_is_paused(airflow: AirflowServer) -> None:
    """The paused DAG is listed as paused and the others as active."""
    answer = airflow.session().get(
        f"{airflow.url}/api/{airflow.api_version}/dags", params={"limit": 100}, timeout=30
    )
    paused = {dag["dag_id"]: dag["is_paused"] for dag in answer.json()["dags"]}
    assert paused["devstack_paused"] is True
    assert paused["devstack_plain"] is False


def test_api_server_stops_and_starts_on_the_same_url(stack: Stack, airflow3: AirflowServer) -> None:
    """stop-api makes the URL refuse connections; start-api brings it back with the same login."""
    url = airflow3.url
    stack.stop_api("3")
    try:
        try:
            requests.get(f"{url}/api/v2/version", timeout=5)
        except requests.ConnectionError:
            refused = True
        else:
            refused = False
        assert refused
    finally:
        stack.start_api("3")
    server = stack.airflow_server("3")
    assert server.url == url
    assert server.session().get(f"{url}/api/v2/dags", timeout=30).status_code == 200


def _handshake(client: ssl.SSLObject, server: ssl.SSLObject) -> None:
    """Drive a TLS handshake between two in-memory ends (no socket) until both finish."""
    pending = [client, server]
    for _ in range(10):
        for end in list(pending):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                continue
            pending.remove(end)
        if not pending:
            return
    raise AssertionError("the TLS handshake did not finish")


def test_issued_certificate_verifies_for_127_0_0_1(tmp_path: Path) -> None:
    """issue_tls: a client trusting only its CA accepts the server certificate for 127.0.0.1."""
    tls = issue_tls(tmp_path / "tls")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tls.cert, tls.key)
    # with a cafile, the default context trusts that CA alone (no system store)
    client_context = ssl.create_default_context(cafile=str(tls.ca))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(to_server, to_client, server_side=True)
    client = client_context.wrap_bio(to_client, to_server, server_hostname="127.0.0.1")

    _handshake(client, server)

    peer = client.getpeercert()
    assert peer is not None
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
    assert tls.key.stat().st_mode & 0o077 == 0  # the private key is readable by its owner only
