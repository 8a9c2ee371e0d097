"""Health: one HTTP server for /healthz, /readyz and /metrics (spec §6, STYLE §14).

``HealthServer`` serves three read-only routes from a ``Readiness`` (``readiness.py``)
and the ``Metrics``:

- ``/healthz``: the process loop is alive (recent progress, no fatal error): 200 or 503.
- ``/readyz``: started, no fatal error, Kafka connected, partitions assigned (possibly
  none), Airflow available, recent progress: 200 ``{"ready": true}`` or 503 with reasons.
- ``/metrics``: the Prometheus text of ``Metrics.render()``.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from consumer.metrics import CONTENT_TYPE, Metrics
from consumer.readiness import Readiness

# loopback only: a container sets 0.0.0.0 (TRIGGER_CONSUMER_HTTP_HOST) so probes reach it
DEFAULT_HOST = "127.0.0.1"
JSON_CONTENT_TYPE = "application/json"
# seconds: how quickly close() stops the serving thread
SHUTDOWN_POLL_INTERVAL = 0.1


class _HealthHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the state its handler serves."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], readiness: Readiness, metrics: Metrics) -> None:
        self.readiness = readiness
        self.metrics = metrics
        super().__init__(address, _HealthHandler)


class _HealthHandler(BaseHTTPRequestHandler):
    """Serves /healthz, /readyz and /metrics; every other path is 404."""

    server: _HealthHTTPServer

    def do_GET(self) -> None:
        """Answer one GET request from the current state."""
        path = urlsplit(self.path).path
        readiness = self.server.readiness
        if path == "/healthz":
            alive, reasons = readiness.alive()
            body: dict[str, Any] = {"status": "ok"} if alive else {"status": "unhealthy"}
            if reasons:
                body["reasons"] = reasons
            self._send_json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, body)
        elif path == "/readyz":
            ready, reasons = readiness.verdict()
            body = {"ready": True} if ready else {"ready": False, "reasons": reasons}
            self._send_json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, body)
        elif path == "/metrics":
            self._send(HTTPStatus.OK, CONTENT_TYPE, self.server.metrics.render())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found", "path": path})

    def _send_json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, JSON_CONTENT_TYPE, json.dumps(body).encode())

    def _send(self, status: HTTPStatus, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Drop request lines: probes every few seconds would flood stderr."""


class HealthServer:
    """The HTTP server of ``/healthz``, ``/readyz`` and ``/metrics``, in a daemon thread."""

    def __init__(
        self, port: int, readiness: Readiness, metrics: Metrics, *, host: str = DEFAULT_HOST
    ) -> None:
        """Prepare the server; ``start`` binds and serves.

        Args:
            port: the TCP port; 0 picks a free one (read it from ``port`` after ``start``).
            readiness: the state /healthz and /readyz report.
            metrics: what /metrics renders.
            host: the address to bind; ``0.0.0.0`` in a container so probes can reach it.
        """
        self._address = (host, port)
        self._readiness = readiness
        self._metrics = metrics
        self._server: _HealthHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when created with port 0).

        Raises:
            RuntimeError: before ``start``.
        """
        if self._server is None:
            raise RuntimeError("HealthServer is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind the socket and serve in a daemon thread.

        Raises:
            OSError: when the address cannot be bound (e.g. the port is in use).
        """
        if self._server is not None:
            return
        self._server = _HealthHTTPServer(self._address, self._readiness, self._metrics)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_INTERVAL},
            name="health-server",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the socket; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> HealthServer:
        """Start the server for a ``with`` block."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the server at the end of a ``with`` block."""
        self.close()
