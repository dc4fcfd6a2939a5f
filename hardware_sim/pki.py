"""A local certificate authority for the simulated room's TLS links (``cryptography``).

``LocalPki(directory).ensure(clients)`` creates, at first use, a CA, a server certificate for
the loopback address (``127.0.0.1``, ``::1``, ``localhost``) and one client certificate per
identity, and reuses them afterwards; a certificate that is missing, expires within a day or
was not signed by this CA is issued again. Keys are EC P-256, written mode 0600 in a 0700
directory; certificates are PEM. Files::

    ca.pem ca.key  server.pem server.key  <identity>.pem <identity>.key
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825  # the longest lifetime browsers accept for a leaf; plenty for a test room
RENEW_BEFORE = dt.timedelta(days=1)
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")
_IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Credential:
    """A certificate and its private key."""

    cert: Path
    key: Path


class LocalPki:
    """The CA and certificates under one directory (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def credential(self, name: str) -> Credential:
        check_identity(name)
        return Credential(self.directory / f"{name}.pem", self.directory / f"{name}.key")

    @property
    def server(self) -> Credential:
        return self.credential("server")

    def ensure(self, clients: Iterable[str] = ()) -> LocalPki:
        """Create what is missing or stale: the CA, the server and each client certificate."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        ca_key, ca_cert = self._ensure_ca()
        self._ensure_leaf("server", ca_key, ca_cert, server=True)
        for name in clients:
            self._ensure_leaf(name, ca_key, ca_cert, server=False)
        return self

    # -- internals ---------------------------------------------------------------------------
    def _ensure_ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path = self.directory / "ca.key"
        loaded = _load(self.ca, key_path)
        if loaded is not None and _fresh(loaded[1]):
            key, cert = loaded
            return key, cert
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fluoroctl simulated room CA")])
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_key(key_path, key)
        _write_cert(self.ca, cert)
        return key, cert

    def _ensure_leaf(
        self,
        name: str,
        ca_key: ec.EllipticCurvePrivateKey,
        ca_cert: x509.Certificate,
        *,
        server: bool,
    ) -> None:
        cred = self.credential(name)
        loaded = _load(cred.cert, cred.key)
        if loaded is not None and _fresh(loaded[1]) and _signed_by(loaded[1], ca_cert):
            return
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            _builder(subject, ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
            names += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(cred.key, key)
        _write_cert(cred.cert, cert)


def check_identity(name: str) -> str:
    """A name usable as a file name, a certificate CN and a broker user name."""
    if not _IDENTITY.match(name):
        raise ValueError(f"identity {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    return name


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load(
    cert_path: Path, key_path: Path
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """The pair if both files exist, parse and belong together; else None (issue anew)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        return None
    return key, cert


def _fresh(cert: x509.Certificate) -> bool:
    now = dt.datetime.now(dt.UTC)
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` mode 0600 from the first byte (never briefly readable)."""
    _write_atomic(path, data, 0o600)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)  # the umask may have taken bits away; set exactly
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
