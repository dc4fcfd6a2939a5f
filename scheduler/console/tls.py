"""HTTPS for a console other hosts reach: the server's TLS context and a self-signed
certificate for rooms without a hospital PKI (``fluoroctl keys console-cert``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: browsers refuse leaf certificates valid for longer than 398 days
VALID_DAYS = 397


class ConsoleTlsError(ValueError):
    """The console's certificate or key cannot be used (one line, names the file)."""


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """TLS 1.2+ server context for ``cert``/``key``; a one-line error when unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise ConsoleTlsError(f"console TLS: {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConsoleTlsError(f"console TLS: {cert} / {key} cannot be used: {exc}") from None
    return context


def fingerprint(cert: str | Path) -> str:
    """SHA-256 of the certificate (DER), as browsers show it: AB:CD:…"""
    pem = Path(cert).read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def write_self_signed(names: Sequence[str], cert_path: Path, key_path: Path) -> str:
    """A self-signed EC P-256 server certificate for ``names`` (host names or addresses);
    the key is written mode 0600 from its first byte. Returns the certificate's fingerprint."""
    if not names:
        raise ConsoleTlsError("a console certificate needs at least one --name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return fingerprint(cert_path)


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
