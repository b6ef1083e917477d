"""Certificates for the simulator, generated with ``cryptography``.

Certificates generated with ``cryptography``: a local CA, the server's TLS certificate,
and the connected app's JWT signing pair when none is configured.

Files are written once into the simulator's state folder and reused on later starts,
so a CA bundle handed to clients stays valid across restarts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the generated material."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name | None,
    signer: rsa.RSAPrivateKey,
    ca: bool,
    host: str = "",
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    elif host:
        alternatives: list[x509.GeneralName] = [x509.DNSName("localhost")]
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alternatives.append(x509.DNSName(host))
        alternatives.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alternatives), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def ensure_tls(folder: Path, host: str) -> TlsFiles:
    """Create (once) a CA and a server certificate for ``host`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if files.ca_cert.exists() and files.server_cert.exists() and files.server_key.exists():
        current = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        if host in str(
            current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ):
            return files
    ca_key = _key()
    ca_cert = _certificate("sfe simulator local CA", ca_key, None, ca_key, ca=True)
    server_key = _key()
    server_cert = _certificate(host, server_key, ca_cert.subject, ca_key, ca=False, host=host)
    _write_key(files.server_key, server_key)
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return files


def ensure_jwt_pair(folder: Path) -> tuple[Path, Path]:
    """A private key and self-signed certificate for the JWT bearer flow (created once)."""
    folder.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = folder / "jwt-app.key", folder / "jwt-app.pem"
    if not (key_file.exists() and cert_file.exists()):
        key = _key()
        cert = _certificate("sfe connected app", key, None, key, ca=False)
        _write_key(key_file, key)
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file
