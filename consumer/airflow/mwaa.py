"""MwaaAdapter: Airflow's REST API through Amazon MWAA's ``InvokeRestApi`` (``AIRFLOW_AUTH=mwaa``).

Mounted on the client's session for the Airflow URL, it turns each prepared request into one
``invoke_rest_api(Name, Path, Method, QueryParameters, Body)`` call, signed with the AWS
credentials of boto3's chain, and its answer back into a ``requests.Response``: the client,
its retry loop, detection, tracking, listing and clearing run unchanged. The mapping keeps
their promises (botocore's service model ``mwaa/2020-07-01``):

- Airflow's answer (``RestApiStatusCode``/``RestApiResponse``, also when carried by
  ``RestApiClientException``/``RestApiServerException``) becomes that status and JSON body;
- throttling becomes 429 (retried; nothing reached Airflow); MWAA's own failures 502
  (retried, and a POST may have reached Airflow: the service may fail after forwarding it,
  past its 10 s limit say); a ``ValidationException`` 400 (the request is refused);
- botocore's connect failures and timeouts become requests' own (a ``ReadTimeout`` after
  sending: may have reached); AWS refusing the credentials (IAM, a wrong key), no AWS
  credentials and no such environment raise ``ConfigError`` (the worker stops).

``Path`` carries no ``/api/vN`` and is at most 64 characters: a URL's API prefix must be the
environment's (learned once from ``GET /version``), and a run read or clear whose path is
longer goes through ``mwaa_paths.py``.
"""

from __future__ import annotations

import http
import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import requests
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import SSLError as BotoSSLError
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from consumer.airflow.mwaa_paths import Answer, Call, shorten
from consumer.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_mwaa import MWAAClient

API_PREFIXES = {"/api/v1": "v1", "/api/v2": "v2"}
HTTP_OK = 200
THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
    }
)
# AWS itself refusing who we are (IAM, a bad or expired key), before Airflow is asked
CREDENTIALS_REFUSED = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "IncompleteSignature",
        "MissingAuthenticationTokenException",
    }
)
AIRFLOW_ANSWERS = frozenset({"RestApiClientException", "RestApiServerException"})


def make_mwaa_client(connect_timeout: float, read_timeout: float, pool_size: int) -> MWAAClient:
    """A boto3 MWAA client from the standard chain (region, credentials, endpoint).

    Args:
        connect_timeout: seconds to connect.
        read_timeout: seconds to wait for an answer (MWAA itself gives up after 10 s).
        pool_size: pooled connections.

    Returns:
        The client; botocore's own retries are off, the transport's retry loop retries.

    Raises:
        ConfigError: no region is configured.
    """
    import boto3  # noqa: PLC0415 -- only AIRFLOW_AUTH=mwaa pays for importing boto3

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=pool_size,
        # one attempt: a retried POST must show in the history (may_have_reached)
        retries={"total_max_attempts": 1, "mode": "standard"},
        user_agent_extra="airflow-trigger-consumer",
    )
    try:
        return boto3.session.Session().client("mwaa", config=config)
    except BotoCoreError as exc:
        raise ConfigError(
            f"cannot make an MWAA client: {exc}; set AWS_DEFAULT_REGION or a profile's region"
        ) from None


class MwaaAdapter(BaseAdapter):
    """A ``requests`` adapter that sends Airflow REST calls through ``InvokeRestApi``."""

    def __init__(self, client: MWAAClient, environment: str, *, root_path: str = "") -> None:
        """Keep the client; nothing is sent yet.

        Args:
            client: the boto3 MWAA client (``make_mwaa_client``).
            environment: the MWAA environment's name.
            root_path: the path of the Airflow URL, stripped before ``/api/vN``.
        """
        super().__init__()
        self._client = client
        self.environment = environment
        self._root = root_path.rstrip("/")
        self._lock = threading.Lock()
        self._api: str | None = None

    def __repr__(self) -> str:
        """Name the environment and region, never a credential."""
        return f"MwaaAdapter(environment={self.environment!r}, region={self.region!r})"

    @property
    def region(self) -> str:
        """The AWS region the client calls."""
        return str(self._client.meta.region_name)

    def send(  # noqa: PLR0917 -- requests' BaseAdapter.send signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request through ``InvokeRestApi`` (timeouts are the client's own).

        Args:
            request: the prepared request to ``<url>/api/vN/...``.
            stream: ignored (answers are small JSON documents).
            timeout: ignored: the boto3 client's timeouts apply.
            verify: ignored: boto3 verifies AWS's certificate.
            cert: ignored.
            proxies: ignored.

        Returns:
            Airflow's answer as MWAA carried it, or the status a service failure maps to.

        Raises:
            requests.ConnectionError: no answer (``ConnectTimeout``, ``ReadTimeout`` too).
            ConfigError: no AWS credentials, or no such environment.
        """
        url = urlsplit(request.url or "")
        path = url.path.removeprefix(self._root)
        api = API_PREFIXES.get(path[:7])
        if api is None:
            return _response(request, (404, {"detail": "MWAA serves only Airflow's REST API"}))
        environment_api = self._environment_api()
        if not isinstance(environment_api, str):
            return _response(request, environment_api)  # MWAA failed: say how
        if api != environment_api:
            detail = f"this MWAA environment serves /api/{environment_api}"
            return _response(request, (404, {"detail": detail}))
        body = json.loads(request.body) if request.body else None
        call = Call((request.method or "GET").upper(), path[7:], _query(url.query), body)
        return _response(request, shorten(self.invoke, api, call))

    def _environment_api(self) -> str | Answer:
        """``v1``/``v2`` from the environment's Airflow version, or the failed answer."""
        if self._api is not None:
            return self._api
        status, body = self.invoke("GET", "/version", {}, None)
        version = body.get("version") if isinstance(body, dict) else None
        if status != HTTP_OK or not isinstance(version, str):
            return status, body
        with self._lock:
            self._api = "v1" if version.startswith("2.") else "v2"
            return self._api

    def invoke(
        self, method: str, path: str, query: dict[str, Any], body: dict[str, Any] | None
    ) -> Answer:
        """One ``InvokeRestApi`` call.

        Args:
            method: the HTTP method.
            path: the path below ``/api/vN``, at most 64 characters.
            query: query parameters.
            body: the JSON body.

        Returns:
            The status and JSON body of Airflow's answer, or of a mapped service failure.

        Raises:
            requests.ConnectionError: no answer came (``ConnectTimeout``/``ReadTimeout`` too).
            ConfigError: AWS refused or found no credentials, or no such environment.
        """
        call: dict[str, Any] = {"Name": self.environment, "Path": path, "Method": method}
        if query:
            call["QueryParameters"] = query
        if body is not None:
            call["Body"] = body
        try:
            answer: Any = self._client.invoke_rest_api(**call)
        except ClientError as exc:
            return self._service_answer(exc)
        except BotoCoreError as exc:
            raise _no_answer(exc) from exc
        return int(answer.get("RestApiStatusCode") or HTTP_OK), answer.get("RestApiResponse")

    def _service_answer(self, exc: ClientError) -> Answer:
        """What an error of ``InvokeRestApi`` means to the client (see the module docstring)."""
        reply: Any = exc.response
        code = str(reply.get("Error", {}).get("Code", ""))
        http_status = int(reply.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in AIRFLOW_ANSWERS:
            status = reply.get("RestApiStatusCode")
            if isinstance(status, int):
                return status, reply.get("RestApiResponse")
            return 502, {"detail": f"MWAA answered {code} without Airflow's status"}
        if code == "ResourceNotFoundException":
            raise ConfigError(
                f"MWAA has no environment {self.environment!r} in region {self.region}: "
                "check TRIGGER_CONSUMER_MWAA_ENVIRONMENT and the AWS region"
            )
        if code in THROTTLED or http_status == http.HTTPStatus.TOO_MANY_REQUESTS:
            return 429, {"detail": f"MWAA throttled InvokeRestApi ({code})"}
        if code in CREDENTIALS_REFUSED or http_status in {401, 403}:
            raise ConfigError(
                f"AWS refused InvokeRestApi on MWAA environment {self.environment} ({code}): "
                "check the AWS credentials; the worker's identity needs airflow:InvokeRestApi "
                "on the environment"
            )
        message = str(reply.get("Error", {}).get("Message", ""))[:300]
        if http_status == http.HTTPStatus.SERVICE_UNAVAILABLE:
            return 503, {"detail": f"MWAA unavailable ({code}): {message}"}
        if 400 <= http_status < 500:  # noqa: PLR2004 -- the client-error range
            return 400, {"detail": f"MWAA refused the call ({code}): {message}"}
        # the service failed, maybe after forwarding: a POST may have reached Airflow
        return 502, {"detail": f"MWAA failed ({code or http_status}): {message}"}

    def close(self) -> None:
        """Nothing to release: the boto3 client pools its own connections."""


def _no_answer(exc: BotoCoreError) -> Exception:
    """The ``requests`` exception ``failures.classify_failure`` reads as the same outcome."""
    text = f"MWAA InvokeRestApi: {type(exc).__name__}"
    if isinstance(exc, ReadTimeoutError):  # sent, no answer: it may have reached Airflow
        return requests.ReadTimeout(text)
    if isinstance(exc, ConnectTimeoutError):
        return requests.ConnectTimeout(text)
    if isinstance(exc, BotoSSLError):
        return requests.exceptions.SSLError(f"{text}: {exc}")
    if isinstance(exc, BotoConnectionError):  # no connection made: nothing sent
        return requests.ConnectionError(ConnectionRefusedError(text))
    if isinstance(exc, HTTPClientError):  # a connection cut after sending: ConnectionAborted
        return requests.ConnectionError(text)
    return ConfigError(
        f"MWAA InvokeRestApi cannot be called: {exc}; check the AWS credentials "
        "(environment, profile, role) and region"
    )


def _query(text: str) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name in query:  # a repeated parameter becomes a list
            previous = query[name]
            query[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            query[name] = value
    return query


def _response(request: requests.PreparedRequest, answer: Answer) -> requests.Response:
    """A ``requests.Response`` carrying ``answer`` as JSON."""
    status, body = answer
    response = requests.Response()
    response.status_code = status
    response._content = b"" if body is None else json.dumps(body).encode("utf-8")
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    response.encoding = "utf-8"
    response.url = request.url or ""
    response.request = request
    try:
        response.reason = http.HTTPStatus(status).phrase
    except ValueError:
        response.reason = ""
    return response
