"""A secured Kafka broker: SSL, SASL_PLAINTEXT and SASL_SSL listeners next to PLAINTEXT.

It is a separate broker with its own work dir and ports, started on demand (the security
tests); the shared PLAINTEXT broker is never touched. Inter-broker and controller traffic
stay PLAINTEXT, so the broker boots without credentials (notes §6), and the PLAINTEXT
listener lets tests create topics and look at what was written. SASL offers PLAIN (users
inline in the JAAS line) and SCRAM-SHA-256/512 (users written into the metadata log at
format time with ``--add-scram``). The broker's certificate for ``127.0.0.1``/``localhost``
comes from a CA made at start; nothing of it is committed.
"""

from __future__ import annotations

import secrets
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from devstack import procs
from devstack.kafka import START_ATTEMPTS, KafkaBroker, merge_properties

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
PLAIN_USER = "plain-client"
SCRAM_USER = "scram-client"

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


@dataclass(frozen=True)
class SaslCredentials:
    """One SASL user; the password stays out of ``repr`` (it ends up in test reports)."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SecurityConfig:
    """What a secured broker adds to the PLAINTEXT one: listener ports, TLS key, users.

    Attributes:
        ssl_port: the ``SSL`` listener.
        sasl_plaintext_port: the ``SASL_PLAINTEXT`` listener.
        sasl_ssl_port: the ``SASL_SSL`` listener.
        keystore: PEM file with the unencrypted PKCS#8 key and the certificate chain.
        plain: the user the PLAIN mechanism knows.
        scram: the user known to both SCRAM mechanisms (same password for both).
    """

    ssl_port: int
    sasl_plaintext_port: int
    sasl_ssl_port: int
    keystore: Path
    plain: SaslCredentials
    scram: SaslCredentials

    def listener_ports(self) -> dict[str, int]:
        """Port of each secured listener, by listener name (= security protocol)."""
        return {
            "SSL": self.ssl_port,
            "SASL_PLAINTEXT": self.sasl_plaintext_port,
            "SASL_SSL": self.sasl_ssl_port,
        }

    def jaas_config(self, mechanism: str) -> str:
        """The broker-side JAAS line of ``mechanism`` (PLAIN lists its users inline)."""
        users = ""
        if mechanism == "PLAIN":
            users = f' user_{self.plain.username}="{self.plain.password}"'
        return f"{_LOGIN_MODULES[mechanism]} required{users};"

    def properties(self, port: int, ctrl_port: int) -> dict[str, str]:
        """Broker properties that override or extend the PLAINTEXT broker's.

        Args:
            port: the PLAINTEXT listener's port (kept as the inter-broker listener).
            ctrl_port: the controller listener's port (stays PLAINTEXT).

        Returns:
            Property name → value.
        """
        secured = [f"{name}://127.0.0.1:{p}" for name, p in self.listener_ports().items()]
        props = {
            "listeners": ",".join(
                [f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{ctrl_port}", *secured]
            ),
            "advertised.listeners": ",".join([f"PLAINTEXT://127.0.0.1:{port}", *secured]),
            "listener.security.protocol.map": ",".join(
                ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
                + [f"{name}:{name}" for name in self.listener_ports()]
            ),
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.client.auth": "none",
        }
        for listener in ("sasl_plaintext", "sasl_ssl"):
            for mechanism in SASL_MECHANISMS:
                key = f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"
                props[key] = self.jaas_config(mechanism)
        return props

    def format_args(self) -> list[str]:
        """``StorageTool format`` arguments creating the SCRAM user for both mechanisms."""
        args = []
        for mechanism in SCRAM_MECHANISMS:
            user = f"[name={self.scram.username},password={self.scram.password}]"
            args += ["--add-scram", f"{mechanism}={user}"]
        return args


@dataclass(kw_only=True)
class SecuredKafkaBroker(KafkaBroker):
    """A ``KafkaBroker`` with the secured listeners of ``security`` added.

    A subclass rather than a field on ``KafkaBroker``: the shared stack's state file is
    ``asdict(KafkaBroker)``, and it must stay exactly as it was.
    """

    security: SecurityConfig

    def _server_properties(self) -> str:
        overrides = self.security.properties(self.port, self.ctrl_port)
        return merge_properties(super()._server_properties(), overrides)

    def _format_args(self) -> list[str]:
        return self.security.format_args()


@dataclass
class SecuredBroker:
    """A running secured broker: endpoints per protocol, the CA to trust, the SASL users."""

    broker: SecuredKafkaBroker
    ca_file: Path

    @property
    def endpoints(self) -> dict[str, str]:
        """``host:port`` of each listener, by security protocol (PLAINTEXT included)."""
        ports = {"PLAINTEXT": self.broker.port, **self.broker.security.listener_ports()}
        return {protocol: f"127.0.0.1:{port}" for protocol, port in ports.items()}

    @property
    def plain(self) -> SaslCredentials:
        """The PLAIN user."""
        return self.broker.security.plain

    @property
    def scram(self) -> SaslCredentials:
        """The SCRAM-SHA-256/512 user."""
        return self.broker.security.scram

    def credentials(self, mechanism: str) -> SaslCredentials:
        """The user that ``mechanism`` knows."""
        return self.plain if mechanism == "PLAIN" else self.scram

    def stop(self, grace: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``grace`` s (its data is thrown away)."""
        if self.broker.pid is not None:
            procs.stop(self.broker.pid, sig=signal.SIGTERM, grace=grace)
            self.broker.pid = None


def write_tls_files(folder: Path) -> tuple[Path, Path]:
    """Make a CA and a certificate for ``127.0.0.1``/``localhost`` issued by it.

    Args:
        folder: where ``ca.pem`` and ``broker-keystore.pem`` are written.

    Returns:
        (CA certificate file, broker PEM keystore: PKCS#8 key then certificate chain).
    """
    # test-only packages: imported here so that the PLAINTEXT stack does not need them
    import trustme  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="devstack test CA")
    cert = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    # Kafka's PEM keystore reads PKCS#8 only; trustme writes the traditional OpenSSL form
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    keystore = folder / "broker-keystore.pem"
    keystore.write_bytes(pkcs8 + b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    keystore.chmod(0o600)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca_file, keystore


def start_secured_broker(work: Path, *, tie_to_parent: bool) -> SecuredBroker:
    """Format and start a fresh secured broker in ``work`` on free ports, with new secrets.

    Args:
        work: its own directory (wiped first); never the shared broker's.
        tie_to_parent: the broker dies with this process.

    Returns:
        The running broker with its endpoints, CA file and credentials.

    Raises:
        StackError: when it did not start after ``START_ATTEMPTS`` tries.
    """
    error: procs.StackError | None = None  # the last attempt's, re-raised after the last try
    for _ in range(START_ATTEMPTS):
        shutil.rmtree(work, ignore_errors=True)
        ca_file, keystore = write_tls_files(work / "tls")
        security = SecurityConfig(
            ssl_port=procs.free_port(),
            sasl_plaintext_port=procs.free_port(),
            sasl_ssl_port=procs.free_port(),
            keystore=keystore,
            # hex: no character that the JAAS line or --add-scram would need to quote
            plain=SaslCredentials(PLAIN_USER, secrets.token_hex(16)),
            scram=SaslCredentials(SCRAM_USER, secrets.token_hex(16)),
        )
        broker = SecuredKafkaBroker(
            work=work, port=procs.free_port(), ctrl_port=procs.free_port(), security=security
        )
        try:
            broker.start(tie_to_parent=tie_to_parent)
        except procs.StackError as exc:
            broker.stop()
            error = exc
            continue
        return SecuredBroker(broker=broker, ca_file=ca_file)
    raise error or procs.StackError("the secured Kafka broker did not start")
