"""MwaaStandIn: a stand-in of Amazon MWAA's ``InvokeRestApi`` in front of the real Airflow.

Not MWAA: the service's published API (botocore's model ``mwaa/2020-07-01``) played on
127.0.0.1, so that boto3 reaches it through ``AWS_ENDPOINT_URL_MWAA``:

- ``POST /restapi/{Name}``, signed with SigV4: the signature is computed again with
  botocore's own signer (``SigV4Auth``) from the request and the known test credentials and
  must match (else 403 ``InvalidSignatureException``, as AWS answers);
- ``Name`` must be the environment's (else 404 ``ResourceNotFoundException``), ``Path``
  1-64 characters (else 400 ``ValidationException``);
- ``Path``, ``Method``, ``QueryParameters`` and ``Body`` go to the real Airflow below
  ``/api/v1`` or ``/api/v2`` with the stack's credentials; its 2xx answer comes back as
  ``RestApiStatusCode``/``RestApiResponse``, 4xx as ``RestApiClientException`` and 5xx as
  ``RestApiServerException`` (HTTP 400, both carrying Airflow's status and body).

Faults, one at a time: ``throttle(n)`` (the next n calls get ``ThrottlingException``),
``deny()`` (``AccessDeniedException``), ``hang_after_next_trigger()`` (forward the next
trigger POST, then answer nothing until the client gives up) and
``fail_after_next_trigger()`` (forward it, then answer ``InternalServerException``).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack.airflow import AirflowServer
from tests.cloud.upstream import AirflowUpstream

ACCESS_KEY = "AKIASTANDIN000000001"
SECRET_KEY = "standin-secret-key-never-logged-0001"
REGION = "eu-west-1"
ENVIRONMENT = "standin-environment"
MAX_PATH = 64
AUTH_PATTERN = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


class MwaaStandIn:
    """``InvokeRestApi`` on 127.0.0.1, forwarding to one devstack Airflow."""

    def __init__(self, server: AirflowServer, *, hang_seconds: float = 5.0) -> None:
        """Bind a free port and serve.

        Args:
            server: the Airflow calls are forwarded to.
            hang_seconds: how long a hung answer is held before the connection is closed.
        """
        self.upstream = AirflowUpstream(server)
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self._throttle = 0
        self._deny = False
        self._after_trigger: str | None = None  # "hang" or "fail"
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (Method, Path, QueryParameters)
        self.bad_signatures = 0
        self.forwarded_triggers = 0
        self._released = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def aws_env(self, **extra: str) -> dict[str, str]:
        """The AWS environment a client of this stand-in runs with (the standard chain)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_MWAA": self.url,
            # the model's "env." host prefix would turn 127.0.0.1 into a name that resolves nowhere
            "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }

    def throttle(self, times: int) -> None:
        """Answer the next ``times`` calls with ``ThrottlingException``."""
        with self._lock:
            self._throttle = times

    def deny(self) -> None:
        """Answer every call with ``AccessDeniedException`` (IAM denies InvokeRestApi)."""
        with self._lock:
            self._deny = True

    def hang_after_next_trigger(self) -> None:
        """Forward the next trigger POST (Airflow makes the run), then never answer it."""
        with self._lock:
            self._after_trigger = "hang"

    def fail_after_next_trigger(self) -> None:
        """Forward the next trigger POST, then answer ``InternalServerException``."""
        with self._lock:
            self._after_trigger = "fail"

    def paths(self) -> list[str]:
        """Every ``Path`` received, in order."""
        with self._lock:
            return [path for _, path, _ in self.calls]

    def close(self) -> None:
        """Stop serving (releasing a hung answer)."""
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        self.upstream.close()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one ``InvokeRestApi`` request."""
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if not self._signature_valid(handler, raw):
            with self._lock:
                self.bad_signatures += 1
            _error(handler, 403, "InvalidSignatureException", {"message": "signature mismatch"})
            return
        name = handler.path.removeprefix("/restapi/")
        if handler.command != "POST" or name != ENVIRONMENT:
            _error(handler, 404, "ResourceNotFoundException", {"message": f"no {name}"})
            return
        call = json.loads(raw or b"{}")
        path, method = str(call.get("Path", "")), str(call.get("Method", ""))
        query = call.get("QueryParameters") or {}
        with self._lock:
            self.calls.append((method, path, query))
            throttled, self._throttle = self._throttle > 0, max(self._throttle - 1, 0)
            denied = self._deny
            trigger = method == "POST" and path.endswith("/dagRuns")
            after = self._after_trigger if trigger else None
            if after is not None:
                self._after_trigger = None
        if denied:
            _error(handler, 403, "AccessDeniedException", {"Message": "not authorized"})
        elif throttled:
            _error(handler, 429, "ThrottlingException", {"message": "Rate exceeded"})
        elif not 1 <= len(path) <= MAX_PATH:
            message = f"Value at 'path' failed to satisfy constraint: length <= {MAX_PATH}"
            _error(handler, 400, "ValidationException", {"message": message})
        else:
            self._forward(handler, (method, path, query, call.get("Body")), after)

    def _forward(
        self,
        handler: BaseHTTPRequestHandler,
        call: tuple[str, str, dict[str, Any], Any],
        after: str | None,
    ) -> None:
        method, path, query, body = call
        payload = None if body is None else json.dumps(body).encode()
        answer = self.upstream.call(method, path, query=query, body=payload)
        if after is not None:
            with self._lock:
                self.forwarded_triggers += 1
        if after == "hang":  # the run is made; its answer never comes back in time
            self._released.wait(self.hang_seconds)
            handler.close_connection = True
            return
        if after == "fail":
            _error(handler, 500, "InternalServerException", {"message": "internal failure"})
            return
        try:
            document: Any = answer.json()
        except ValueError:
            document = answer.text[:2000]
        fields = {"RestApiStatusCode": answer.status_code, "RestApiResponse": document}
        if answer.status_code < 400:
            _send(handler, 200, {}, fields)
        elif answer.status_code < 500:
            _error(handler, 400, "RestApiClientException", fields)
        else:
            _error(handler, 400, "RestApiServerException", fields)

    @staticmethod
    def _signature_valid(handler: BaseHTTPRequestHandler, raw: bytes) -> bool:
        """Recompute the SigV4 signature with botocore's signer and compare."""
        matched = AUTH_PATTERN.fullmatch(handler.headers.get("Authorization") or "")
        amz_date = handler.headers.get("X-Amz-Date") or ""
        if matched is None or matched["key"] != ACCESS_KEY or not amz_date:
            return False
        if (matched["region"], matched["service"]) != (REGION, "airflow"):
            return False
        signed = matched["signed"].split(";")
        headers = {name: handler.headers.get(name) or "" for name in signed}
        request = AWSRequest(
            method=handler.command,
            url=f"http://{handler.headers.get('Host')}{handler.path}",
            data=raw,
            headers=headers,
        )
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "airflow", REGION)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        return hmac.compare_digest(expected, matched["signature"])


def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: Any) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _error(handler: BaseHTTPRequestHandler, status: int, code: str, body: dict[str, Any]) -> None:
    """A rest-json error: its code in ``x-amzn-ErrorType``, its members in the body."""
    _send(handler, status, {"x-amzn-ErrorType": code}, body)


def _handler_for(standin: MwaaStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            standin.serve(self)

        def do_GET(self) -> None:
            standin.serve(self)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: tests read ``calls`` instead."""

    return Handler
