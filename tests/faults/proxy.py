"""FaultProxy: a reverse proxy in front of the real Airflow that fails only chosen routes.

A fault injector, not an Airflow stand-in: every request is forwarded to the real server and
its real answer returned, except the trigger POSTs (``POST …/dagRuns``) and the run listings
(``POST …/dagRuns/list``) while a fault is on:

- ``fail_triggers(status)``: answer them ``status`` (503) without forwarding, while
  ``GET /version`` and every other call still reach Airflow;
- ``drop_next_trigger_response(then_fail)``: forward the next one (Airflow creates the
  run), then close the connection without answering: the response is lost; with
  ``then_fail``, the trigger POSTs after it are failed with that status;
- ``fail_lists(status)``: answer the run listings ``status`` (404: an Airflow without the
  list endpoint; 503: a listing that fails);
- ``fail_run_reads(status, times)``: answer the next ``times`` reads of one run
  (``GET …/dagRuns/<run_id>``) ``status``;
- ``fail_clears(status)``: answer the clears (``POST …/clear``, ``…/clearTaskInstances``)
  ``status`` (403: a user allowed to trigger but not to edit runs);
- ``heal()``: forward everything again.

``requests`` keeps the method and path of every request received, in order.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    """Forwards to ``upstream``; fails or drops trigger POSTs as scripted."""

    def __init__(self, upstream: str) -> None:
        """Bind a free port on 127.0.0.1 and start forwarding to ``upstream``."""
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._lock = threading.Lock()
        self._fail_status: int | None = None
        self._drop_next = False
        self._fail_after_drop: int | None = None
        self._list_status: int | None = None
        self._run_read_failures: list[int] = []  # statuses for the next reads of one run
        self._clear_status: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.trigger_posts = 0  # trigger POSTs received
        self.failed_posts = 0  # of which answered with the scripted failure
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def fail_triggers(self, status: int = 503) -> None:
        """Answer every trigger POST with ``status`` until ``heal``."""
        with self._lock:
            self._fail_status = status

    def drop_next_trigger_response(self, then_fail: int | None = None) -> None:
        """Forward the next trigger POST, then drop the connection unanswered."""
        with self._lock:
            self._drop_next = True
            self._fail_after_drop = then_fail

    def fail_lists(self, status: int) -> None:
        """Answer every run listing with ``status`` until ``heal``."""
        with self._lock:
            self._list_status = status

    def fail_run_reads(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` reads of one run with ``status``."""
        with self._lock:
            self._run_read_failures = [status] * times

    def fail_clears(self, status: int) -> None:
        """Answer every clear with ``status`` until ``heal``."""
        with self._lock:
            self._clear_status = status

    def heal(self) -> None:
        """Forward everything again."""
        with self._lock:
            self._clear_status = None
            self._run_read_failures = []
            self._fail_status = None
            self._drop_next = False
            self._list_status = None

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Forward one request, or fail it as scripted."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.rstrip("/")
        trigger = handler.command == "POST" and path.endswith("/dagRuns")
        drop = False
        with self._lock:
            self.requests.append((handler.command, handler.path))
            answer_status = self._list_status if path.endswith("/dagRuns/list") else None
            if handler.command == "POST" and path.endswith(("/clear", "/clearTaskInstances")):
                answer_status = self._clear_status
            run_read = handler.command == "GET" and "/dagRuns/" in path
            if run_read and self._run_read_failures and answer_status is None:
                answer_status = self._run_read_failures.pop()  # the status to answer
        if answer_status is not None:
            self._send(handler, answer_status, {}, json.dumps({"detail": "fault proxy"}).encode())
            return
        if trigger:
            with self._lock:
                self.trigger_posts += 1
                status = self._fail_status
                drop, self._drop_next = self._drop_next, False
                if status is not None and not drop:
                    self.failed_posts += 1
                if drop:
                    status, self._fail_status = None, self._fail_after_drop
            if status is not None:
                self._send(handler, status, {}, json.dumps({"detail": "fault proxy"}).encode())
                return
        upstream = http.client.HTTPConnection(self._host, self._port, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            if drop:  # Airflow made the run; its answer is lost on the way back
                handler.close_connection = True
                return
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_HEADERS}
            self._send(handler, answer.status, kept, payload)
        finally:
            upstream.close()

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
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
