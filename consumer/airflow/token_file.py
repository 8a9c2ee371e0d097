"""TokenFileAuth: a bearer token read from a file and read again whenever the file changes.

Astronomer's Deployment API tokens (and any token a secret store rotates into a mounted file)
are rotated without restarting the worker: before each request the file's identity (inode,
mtime, size) is compared with the one last read, one ``stat`` call, and a changed file is
read again. A token Airflow refuses (401) makes the next request read the file even when it
looks unchanged (a rewrite within the file system's mtime granularity). A file that is
briefly missing or empty mid-rotation keeps the last token in use.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import ClassVar

import requests
import structlog
from pydantic import SecretStr

from consumer.airflow.auth import ApiAuth
from consumer.errors import ConfigError

log = structlog.get_logger(__name__)


class TokenFileAuth(ApiAuth):
    """``Authorization: Bearer <the file's token>``, following the file's rotations."""

    refreshable: ClassVar[bool] = True

    def __init__(self, path: Path, *, initial: SecretStr | None = None) -> None:
        """Keep the path; the file is read on first use (or ``initial`` until it changes).

        Args:
            path: the token file.
            initial: the token the settings already read from it.
        """
        self.path = path
        self._lock = threading.Lock()
        self._token: SecretStr | None = initial
        self._seen: tuple[int, int, int] | None = None
        self._stale = initial is None
        self.reads = 0

    def __repr__(self) -> str:
        """Name the file, never the token."""
        return f"TokenFileAuth(path={str(self.path)!r})"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add ``Authorization: Bearer <token>``, re-reading the file if it changed.

        Args:
            r: the outgoing request.

        Returns:
            The same request.

        Raises:
            ConfigError: the file never gave a token.
        """
        r.headers["Authorization"] = f"Bearer {self.token().get_secret_value()}"
        return r

    def token(self) -> SecretStr:
        """The file's current token.

        Raises:
            ConfigError: the file cannot be read and no token was read before.
        """
        with self._lock:
            try:
                info = os.stat(self.path)
            except OSError as exc:
                return self._last(f"cannot stat {self.path}: {exc.strerror}")
            identity = (info.st_ino, info.st_mtime_ns, info.st_size)
            if self._stale or identity != self._seen:
                self._read(identity)
            return self._last(f"{self.path} holds no token")

    def _read(self, identity: tuple[int, int, int]) -> None:
        try:
            text = self.path.read_text().strip()
        except OSError as exc:
            log.warning("airflow_token_file_unreadable", path=str(self.path), error=exc.strerror)
            return
        if not text:  # mid-rotation: keep the last token, look again next time
            return
        changed = self._token is not None and text != self._token.get_secret_value()
        self._token, self._seen, self._stale = SecretStr(text), identity, False
        self.reads += 1
        if changed:
            log.info("airflow_token_file_rotated", path=str(self.path))

    def _last(self, problem: str) -> SecretStr:
        if self._token is None:
            raise ConfigError(f"no Airflow token: {problem}")
        return self._token

    def invalidate(self, used_header: str | None) -> None:
        """Read the file again before the next request when Airflow refused its token.

        Args:
            used_header: the ``Authorization`` header of the refused request.
        """
        with self._lock:
            token = self._token
            if token is not None and used_header == f"Bearer {token.get_secret_value()}":
                self._stale = True
