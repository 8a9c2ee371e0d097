"""HandshakeCutter: a TCP front that cuts the first TLS handshakes short, then passes through.

A fault injector: the first ``cuts`` connections are accepted, their ClientHello read, and
closed unanswered — what a load balancer does while Airflow restarts behind it. Later
connections are piped, byte for byte, to the TLS server at ``backend``.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from urllib.parse import urlsplit


class HandshakeCutter:
    """Cuts ``cuts`` TLS handshakes short, then forwards to ``backend`` (an https URL)."""

    def __init__(self, backend: str, cuts: int = 1) -> None:
        """Listen on a free port of 127.0.0.1 and start accepting."""
        parts = urlsplit(backend)
        self._backend = (parts.hostname or "127.0.0.1", parts.port or 443)
        self._cuts = cuts
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting."""
        self._closed.set()
        self._listener.close()
        self._thread.join(timeout=10)
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self._cuts:
                with suppress(OSError):
                    client.recv(4096)  # the ClientHello, then nothing
                client.close()
                continue
            upstream = socket.create_connection(self._backend, timeout=30)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
