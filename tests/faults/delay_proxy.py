"""DelayProxy: a TCP fault injector on 127.0.0.1 that delays, or blackholes, what it forwards.

Put in front of the real Airflow, it makes each call take ``delay`` seconds longer, so a
test can have Airflow calls in flight at a chosen moment (a rebalance, say). Put in front
of a Kafka listener, ``blackhole()`` swallows every byte in both directions, connections
left open (new ones accepted, then swallowed too), as a network partition does, until
``restore()``; ``blackhole_when(matches)`` switches it on at the first client chunk that
``matches`` (that chunk swallowed too), so a test can cut the network during one request.
Otherwise it forwards bytes unchanged; it is not a stand-in for any server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

CHUNK = 65536


class DelayProxy:
    """Forwards connections to ``upstream``; client-to-server data waits ``delay`` seconds."""

    def __init__(self, upstream: tuple[str, int], delay: float = 0.0) -> None:
        """Listen on a free loopback port (``port``); call ``close`` or use ``with``.

        Args:
            upstream: the (host, port) to forward to; a loopback address.
            delay: seconds each chunk from the client is held.
        """
        self.upstream = upstream
        self.delay = delay
        self.swallowed = 0  # bytes dropped while blackholed, both directions
        self.blackholed = threading.Event()  # set while bytes are swallowed
        self._trigger: Callable[[bytes], bool] | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        """The proxy's base URL, for an HTTP upstream."""
        return f"http://127.0.0.1:{self.port}"

    def blackhole(self) -> None:
        """Swallow every byte from now on, both ways, without closing any connection."""
        self.blackholed.set()

    def blackhole_when(self, matches: Callable[[bytes], bool]) -> None:
        """Blackhole from the first client-to-server chunk for which ``matches`` is true."""
        with self._lock:
            self._trigger = matches

    def restore(self) -> None:
        """Forward again (what was swallowed stays lost); a pending trigger is disarmed."""
        with self._lock:
            self._trigger = None
        self.blackholed.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(
                target=self._pump, args=(client, server, self.delay, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, 0.0, False), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, target: socket.socket, delay: float, from_client: bool
    ) -> None:
        with contextlib.suppress(OSError):  # a cut connection ends the pump
            while not self._closed.is_set():
                data = source.recv(CHUNK)
                if not data or (delay and self._closed.wait(delay)):  # the injected fault
                    break
                if from_client:
                    self._maybe_trip(data)
                if self.blackholed.is_set():  # the other injected fault
                    with self._lock:
                        self.swallowed += len(data)
                    continue
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _maybe_trip(self, data: bytes) -> None:
        with self._lock:
            if self._trigger is not None and self._trigger(data):
                self._trigger = None
                self.blackholed.set()

    def close(self) -> None:
        """Stop accepting and cut every forwarded connection."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> DelayProxy:
        """Use as a context manager."""
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        """Close on exit."""
        self.close()
