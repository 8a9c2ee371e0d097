"""FaultInjector: a scripted HTTP(S) server on 127.0.0.1 that answers 503s, 429s, stalls, bad TLS.

It is not an Airflow stand-in: each test scripts, per method and path, the exact answers a
real Airflow (or the network in front of it) would give during a fault, and reads back what
the client sent. Replies are used in order; the last one repeats. Unscripted paths get 404.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STALL_FOREVER = 3600.0


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    Attributes:
        status: the HTTP status.
        body: a JSON body, or None for an empty one.
        headers: extra response headers (``Retry-After``...).
        stall: hold the request this many seconds, then drop the connection unanswered.
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    stall: float = 0.0


@dataclass(frozen=True)
class Seen:
    """A request the injector received."""

    method: str
    path: str
    at: float
    headers: Mapping[str, str]
    body: Any


def run_body(dag_id: str, run_id: str, state: str = "queued") -> dict[str, Any]:
    """An Airflow 3 shaped DAG run body, for scripting 200 answers."""
    return {"dag_id": dag_id, "dag_run_id": run_id, "state": state, "logical_date": None}


class FaultInjector:
    """A threaded HTTP(S) server whose answers each test scripts."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        """Bind a free port on 127.0.0.1 (HTTPS when ``tls`` is given) and start serving."""
        self._scripts: dict[tuple[str, str], deque[Reply]] = {}
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda *_: None  # type: ignore[method-assign]
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Release stalled requests and stop serving."""
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer ``method path`` with ``replies`` in order; the last one repeats."""
        with self._lock:
            self._scripts[(method, path)] = deque(replies)

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """The requests received, optionally only those of one method and path."""
        with self._lock:
            return [
                s
                for s in self._seen
                if (method is None or s.method == method) and (path is None or s.path == path)
            ]

    def _next_reply(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> Reply:
        with self._lock:
            self._seen.append(Seen(method, path, time.monotonic(), headers, body))
            replies = self._scripts.get((method, path))
            if not replies:
                return Reply(404, {"detail": f"fault injector: {method} {path} not scripted"})
            return replies.popleft() if len(replies) > 1 else replies[0]

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        """Serve one request from the script."""
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = handler.path.split("?", 1)[0]
        reply = self._next_reply(handler.command, path, dict(handler.headers), body)
        if reply.stall:
            self._released.wait(reply.stall)
            handler.close_connection = True
            return
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)


def _handler_for(injector: FaultInjector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            injector.answer(self)

        def do_POST(self) -> None:
            injector.answer(self)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: the tests read ``seen`` instead."""

    return Handler
