"""A throwaway PKI for TLS tests: a CA, server and client certificates, and renewals.

Shared by the test modules that run the sidecar over TLS (``from pki import ...``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --- Certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A test CA with a server and a client certificate, and a client of another CA."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA the server does not trust
    stranger_key: Path

    def place(self, directory: Path) -> None:
        """Copy the files an example web config names (relative to it) into ``directory``."""
        shutil.copy(self.server_cert, directory / "server.crt")
        shutil.copy(self.server_key, directory / "server.key")
        shutil.copy(self.ca, directory / "client-ca.crt")

    def client(self, *, cert: str | None = None, max_tls12: bool = False) -> ssl.SSLContext:
        """A client context trusting the test CA; ``cert`` = "client" or "stranger"."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert == "client":
            context.load_cert_chain(self.client_cert, self.client_key)
        elif cert == "stranger":
            context.load_cert_chain(self.stranger_cert, self.stranger_key)
        if max_tls12:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
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
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signer = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:  # a CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _issue(
    directory: Path,
    stem: str,
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(subject, key, issuer, usage=usage)
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, directory / f"{stem}.key")
    return cert, key


@contextmanager
def make_pki() -> Iterator[Pki]:
    """A fresh PKI in a temporary directory, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="jse-pki-"))
    try:
        ca = _issue(directory, "ca", "jobstore-exporter test CA", None)
        _issue(directory, "server", "localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH)
        _issue(directory, "client", "prometheus", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
        other = _issue(directory, "other-ca", "some other CA", None)
        _issue(directory, "stranger", "prometheus", other, ExtendedKeyUsageOID.CLIENT_AUTH)
        yield Pki(
            directory=directory,
            ca=directory / "ca.crt",
            server_cert=directory / "server.crt",
            server_key=directory / "server.key",
            client_cert=directory / "client.crt",
            client_key=directory / "client.key",
            stranger_cert=directory / "stranger.crt",
            stranger_key=directory / "stranger.key",
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def issue_server(pki: Pki, cert_path: Path, key_path: Path) -> x509.Certificate:
    """A new server certificate and key from the test CA, as a renewal writes them."""
    ca_cert = x509.load_pem_x509_certificate((pki.directory / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki.directory / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("localhost", key, (ca_cert, ca_key), usage=ExtendedKeyUsageOID.SERVER_AUTH)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert
