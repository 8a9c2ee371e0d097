"""Throwaway TLS for a devstack API server: a CA and a certificate for 127.0.0.1 it issues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerTls:
    """What an API server needs to serve HTTPS, and what its clients need to trust it.

    Attributes:
        cert: PEM certificate chain (server certificate first), valid for ``127.0.0.1``.
        key: PEM private key of the certificate.
        ca: PEM certificate of the CA that signed it: the clients' CA bundle.
    """

    cert: Path
    key: Path
    ca: Path


def issue_tls(folder: Path) -> ServerTls:
    """Make a CA and a certificate for ``127.0.0.1``/``localhost`` issued by it.

    Args:
        folder: where the three PEM files go (created if missing).

    Returns:
        The files; the CA is trusted by nothing but the clients given ``ca``.
    """
    import trustme  # noqa: PLC0415 -- a test dependency, needed only for HTTPS servers

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="devstack Airflow test CA")
    # the IP SAN matters: clients connect to https://127.0.0.1:<port>
    issued = ca.issue_cert("127.0.0.1", "localhost")
    tls = ServerTls(cert=folder / "server.pem", key=folder / "server-key.pem", ca=folder / "ca.pem")
    tls.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    tls.key.touch(mode=0o600)
    issued.private_key_pem.write_to_path(str(tls.key))
    ca.cert_pem.write_to_path(str(tls.ca))
    return tls
