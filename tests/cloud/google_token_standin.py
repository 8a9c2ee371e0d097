"""GoogleTokenStandIn: a stand-in of Google's OAuth 2.0 token endpoint, and a key file for it.

Not Google: the published service-account flow (RFC 7523 JWT bearer grant) on 127.0.0.1.
``key_file`` writes a service-account key JSON whose ``token_uri`` points here, with an RSA
key made for the test; google-auth signs its assertion with that key, and the stand-in
verifies the RS256 signature with the public key, the issuer, the audience (Google's),
the scope and the times before it issues an opaque access token living ``token_life``
seconds. ``valid`` tells the Airflow-side proxy whether a token is one it issued and alive.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ACCOUNT = "trigger-consumer@standin-project.iam.gserviceaccount.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# the audience of every service-account assertion is Google's endpoint, whatever token_uri is
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
CLOCK_SKEW = 30


class GoogleTokenStandIn:
    """A token endpoint issuing short-lived tokens for one service account."""

    def __init__(self, *, token_life: int = 3600) -> None:
        """Make the account's key and serve on a free port.

        Args:
            token_life: seconds each access token lives (``expires_in``).
        """
        self.token_life = token_life
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.issued = 0
        self.refused = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.token_uri = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def key_file(self, path: Path) -> Path:
        """Write the service account's key JSON (``token_uri`` pointing here) to ``path``."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "project_id": "standin-project",
            "private_key_id": "standin-key-1",
            "private_key": pem,
            "client_email": ACCOUNT,
            "client_id": "1",
            "token_uri": self.token_uri,
        }
        path.write_text(json.dumps(info))
        return path

    def valid(self, token: str) -> str:
        """``ok``, ``expired`` or ``unknown`` for a bearer token."""
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            return "unknown"
        return "ok" if time.monotonic() < expiry else "expired"

    def revoke(self) -> None:
        """Forget every token issued so far (revoked: the proxy answers 401)."""
        with self._lock:
            self._tokens.clear()

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one token request: an access token for a valid assertion, else 400."""
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode() if length else "")
        grant = form.get("grant_type", [""])[0]
        problem = self._check(form.get("assertion", [""])[0]) if grant == JWT_GRANT else "grant"
        if problem is not None:
            with self._lock:
                self.refused += 1
            body = {"error": "invalid_grant", "error_description": f"bad {problem}"}
            _send(handler, 400, body)
            return
        token = f"ya29.standin-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_life
            self.issued += 1
        _send(
            handler,
            200,
            {"access_token": token, "expires_in": self.token_life, "token_type": "Bearer"},
        )

    def _check(self, assertion: str) -> str | None:
        """What is wrong with a JWT assertion (its signature first), or None."""
        parts = assertion.split(".")
        if len(parts) != 3:
            return "assertion"
        header, claims = (json.loads(_unb64(part)) for part in parts[:2])
        try:
            self._key.public_key().verify(
                _unb64(parts[2]),
                f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return "signature"
        now = time.time()
        checks = {
            "algorithm": header.get("alg") == "RS256",
            "issuer": claims.get("iss") == ACCOUNT,
            "audience": claims.get("aud") == GOOGLE_TOKEN_AUDIENCE,
            "scope": CLOUD_PLATFORM in str(claims.get("scope", "")).split(),
            "times": claims.get("iat", now + 999) <= now + CLOCK_SKEW < claims.get("exp", 0),
        }
        return next((name for name, ok in checks.items() if not ok), None)


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _handler_for(standin: GoogleTokenStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            standin.serve(self)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: tests read the counters instead."""

    return Handler
