"""BearerProxy: a managed service's front door, in front of the real Airflow of the stack.

Cloud Composer's and Astronomer's web servers accept only their own bearer tokens, and call
Airflow as a user of their own. This proxy stands in for that door: each request's
``Authorization: Bearer`` token is judged by ``judge`` (``ok``, ``expired``, ``unknown``);
only ``ok`` is forwarded (with the stack's credentials, ``AirflowUpstream``), anything else
is answered 401. ``verdicts`` counts the judgements.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.airflow import AirflowServer
from tests.cloud.upstream import AirflowUpstream

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-type",
    "content-encoding",
}

Judge = Callable[[str], str]
"""A bearer token → ``ok``, ``expired`` or ``unknown``."""


class BearerProxy:
    """Forwards requests whose bearer token ``judge`` calls ``ok``; 401 for the others."""

    def __init__(self, server: AirflowServer, judge: Judge) -> None:
        """Bind a free port on 127.0.0.1 and serve."""
        self.upstream = AirflowUpstream(server)
        self._judge = judge
        self._lock = threading.Lock()
        self.verdicts: Counter[str] = Counter()
        self.tokens_seen: list[str] = []  # distinct tokens accepted, in order
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        self.upstream.close()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Judge the token, then forward or refuse."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        header = handler.headers.get("Authorization") or ""
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        verdict = self._judge(token) if token else "missing"
        with self._lock:
            self.verdicts[verdict] += 1
            if verdict == "ok" and token not in self.tokens_seen:
                self.tokens_seen.append(token)
        if verdict != "ok":
            _send(handler, 401, {}, json.dumps({"detail": f"token {verdict}"}).encode())
            return
        answer = self.upstream.call(handler.command, handler.path, body=body, prefixed=True)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        kept["Content-Type"] = answer.headers.get("Content-Type", "application/json")
        _send(handler, answer.status_code, kept, answer.content)


def _send(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes
) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    if "Content-Type" not in headers:
        handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _handler_for(proxy: BearerProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            proxy.serve(self)

        def do_POST(self) -> None:
            proxy.serve(self)

        def do_PATCH(self) -> None:
            proxy.serve(self)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: tests read the counters instead."""

    return Handler
