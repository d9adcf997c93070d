"""Keys and certificates of the simulator, made once under its state directory.

ca.pem                the simulator's own certificate authority (GRAPH_CA_BUNDLE)
server.pem/.key       the TLS certificate of both servers (SAN 127.0.0.1, ::1, localhost), signed by the CA
app.pem               the registered app's certificate AND private key (GRAPH_CLIENT_CERTIFICATE)
signing.pem           the key (and self-signed certificate) the token endpoint signs access tokens with
app.json              the registered app: client id and secret

Everything is reused on the next start with the same state directory, so a TenantAtlas
configured against it (client id, CA bundle) keeps working across restarts.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
import ssl
import string
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_SIZE = 2048


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _write_private(path: Path, data: bytes) -> None:
    """Atomically, readable by the owner only."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _write_public(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TenantAtlas Graph simulator"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _self_signed(key: rsa.RSAPrivateKey, common_name: str, days: int, *, ca: bool = False) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256())


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_key(path: Path) -> rsa.RSAPrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey) else None


def _valid_for(cert: x509.Certificate, days: int) -> bool:
    return cert.not_valid_after_utc > _now() + dt.timedelta(days=days)


def thumbprints(cert: x509.Certificate) -> tuple[str, str]:
    """(x5t, x5t#S256): base64url SHA-1 and SHA-256 of the DER encoding."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha1(der).digest()), b64url(hashlib.sha256(der).digest())  # noqa: S324 (x5t is SHA-1 by definition)


def new_client_secret() -> str:
    """A secret shaped like Entra's (three random characters, '8Q~', random rest; 40 in all)."""
    alphabet = string.ascii_letters + string.digits + "_-.~"
    head = "".join(secrets.choice(alphabet) for _ in range(3))
    tail = "".join(secrets.choice(alphabet) for _ in range(34))
    return f"{head}8Q~{tail}"


@dataclass(frozen=True)
class Pki:
    state_dir: Path
    ca_cert: x509.Certificate
    server_cert_path: Path
    server_key_path: Path
    app_cert: x509.Certificate
    app_pem_path: Path
    signing_key: rsa.RSAPrivateKey
    signing_cert: x509.Certificate
    client_id: str
    client_secret: str

    @property
    def ca_bundle(self) -> Path:
        return self.state_dir / "ca.pem"

    @property
    def client_secret_path(self) -> Path:
        return self.state_dir / "client_secret"

    @property
    def signing_kid(self) -> str:
        return thumbprints(self.signing_cert)[0]

    def server_ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.server_cert_path), str(self.server_key_path))
        return context

    def client_ssl_context(self) -> ssl.SSLContext:
        """For the simulator's own clients (CLI): trusts the simulator's CA only."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    @classmethod
    def load_or_create(cls, state_dir: Path) -> Pki:
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)

        # The certificate authority, made once.
        ca_key = _load_key(state_dir / "ca.key")
        ca_cert = _load_cert(state_dir / "ca.pem")
        if ca_key is None or ca_cert is None or not _valid_for(ca_cert, 30):
            ca_key = _new_key()
            ca_cert = _self_signed(ca_key, "TenantAtlas Graph simulator CA", 3650, ca=True)
            _write_private(state_dir / "ca.key", _key_pem(ca_key))
            _write_public(state_dir / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
            for stale in ("server.pem", "server.key"):
                (state_dir / stale).unlink(missing_ok=True)

        # The servers' certificate, renewed when it nears expiry or when the CA changed.
        server_cert = _load_cert(state_dir / "server.pem")
        server_key = _load_key(state_dir / "server.key")
        if (
            server_cert is None or server_key is None or not _valid_for(server_cert, 7)
            or server_cert.issuer != ca_cert.subject
        ):
            server_key = _new_key()
            now = _now()
            server_cert = (
                x509.CertificateBuilder()
                .subject_name(_name("localhost"))
                .issuer_name(ca_cert.subject)
                .public_key(server_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=397))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            _write_private(state_dir / "server.key", _key_pem(server_key))
            _write_public(state_dir / "server.pem", server_cert.public_bytes(serialization.Encoding.PEM))

        # The registered app's certificate credential: certificate and key in one PEM.
        app_pem_path = state_dir / "app.pem"
        app_cert = _load_cert(app_pem_path)
        app_key = _load_key(app_pem_path)
        if app_cert is None or app_key is None or not _valid_for(app_cert, 7):
            app_key = _new_key()
            app_cert = _self_signed(app_key, "TenantAtlas Graph client", 730)
            _write_private(
                app_pem_path, app_cert.public_bytes(serialization.Encoding.PEM) + _key_pem(app_key)
            )

        # The token signing key (its certificate is what the JWKS publishes as x5c).
        signing_path = state_dir / "signing.pem"
        signing_cert = _load_cert(signing_path)
        signing_key = _load_key(signing_path)
        if signing_cert is None or signing_key is None or not _valid_for(signing_cert, 7):
            signing_key = _new_key()
            signing_cert = _self_signed(signing_key, "accounts.simulator.tenantatlas.invalid", 730)
            _write_private(signing_path, signing_cert.public_bytes(serialization.Encoding.PEM) + _key_pem(signing_key))

        # The app registration.
        registration_path = state_dir / "app.json"
        try:
            registration = json.loads(registration_path.read_text())
            client_id = str(uuid.UUID(registration["client_id"]))
            client_secret = str(registration["client_secret"])
        except (OSError, ValueError, KeyError, TypeError):
            client_id = str(uuid.uuid4())
            client_secret = new_client_secret()
            _write_private(
                registration_path,
                json.dumps({"client_id": client_id, "client_secret": client_secret}, indent=2).encode() + b"\n",
            )
        secret_path = state_dir / "client_secret"
        if not secret_path.is_file() or secret_path.read_text() != client_secret:
            _write_private(secret_path, client_secret.encode())

        return cls(
            state_dir=state_dir, ca_cert=ca_cert,
            server_cert_path=state_dir / "server.pem", server_key_path=state_dir / "server.key",
            app_cert=app_cert, app_pem_path=app_pem_path,
            signing_key=signing_key, signing_cert=signing_cert,
            client_id=client_id, client_secret=client_secret,
        )
