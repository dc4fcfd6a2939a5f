"""TLS and credential options shared by the ``+tls`` link schemes (``tcp+tls``, ``mqtt+tls``).

A link URL names files, never secrets: ``ca=`` (PEM bundle of the CA that signed the peer's
certificate; the system trust store when absent), ``cert=`` and ``key=`` (this side's own
certificate and private key, for peers that require client certificates), and for MQTT
``password_file=`` (the password on its first line). Paths are relative to the working
directory. Files are read when the link opens, so a rotated certificate or password takes
effect on the next reconnect; problems are a :class:`LinkError` naming the file.

A private key or password file that other users may read is refused, as ssh refuses such a
key: the protection would already be gone.
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from ._base import LinkError
from ._url import bad_url

TLS_OPTIONS = frozenset({"ca", "cert", "key"})


@dataclass(frozen=True)
class TlsFiles:
    """The TLS files one side of a link presents and trusts."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_options(cls, url: str, options: dict[str, str], expected: str) -> TlsFiles:
        """From a URL's ``ca``/``cert``/``key``; ``cert`` and ``key`` come as a pair."""
        for name in TLS_OPTIONS:
            if name in options and not options[name]:
                raise bad_url(url, f"{name}= is empty (a file path)", expected)
        if ("cert" in options) != ("key" in options):
            raise bad_url(url, "cert= and key= go together (certificate and its key)", expected)
        return cls(
            ca=Path(options["ca"]) if "ca" in options else None,
            cert=Path(options["cert"]) if "cert" in options else None,
            key=Path(options["key"]) if "key" in options else None,
        )

    def client_context(self, url: str) -> ssl.SSLContext:
        """A context that verifies the server against ``ca`` (its name included) and presents
        ``cert`` when given; :class:`LinkError` naming the file that cannot be used."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is not None:
            _readable(url, self.ca, "CA file")
            try:
                context.load_verify_locations(cafile=str(self.ca))
            except ssl.SSLError as exc:
                raise LinkError(url, f"CA file {self.ca} is not a PEM certificate: {exc}") from exc
        if self.cert is not None and self.key is not None:
            load_identity(url, context, self.cert, self.key)
        return context


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The device (server) side: present ``cert``; with ``client_ca``, require a client
    certificate it signed. For simulators and tests; LinkError naming a bad file."""
    where = f"tls-server:{cert}"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_identity(where, context, cert, key)
    if client_ca is not None:
        _readable(where, client_ca, "CA file")
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def load_identity(url: str, context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load a certificate and its private key into ``context``; LinkError naming the file."""
    _readable(url, cert, "certificate file")
    private_file(url, key, "private key")
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as exc:
        raise LinkError(
            url, f"certificate {cert} and key {key} cannot be used together: {exc}"
        ) from exc


def private_file(url: str, path: Path, what: str) -> None:
    """``path`` exists, is a file and no other user may read or write it."""
    mode = _readable(url, path, what)
    if mode & (stat.S_IRWXO | stat.S_IRWXG):
        raise LinkError(
            url,
            f"{what} {path} is open to other users (mode {stat.S_IMODE(mode):04o}); "
            f"chmod 600 {path}",
        )


def read_password(url: str, path: Path) -> str:
    """The password on the first line of ``path`` (a private file); never logged."""
    private_file(url, path, "password file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LinkError(url, f"cannot read password file {path}: {exc}") from exc
    password = text.splitlines()[0] if text else ""
    if not password:
        raise LinkError(url, f"password file {path} is empty")
    return password


def describe_tls_error(exc: BaseException, where: str, ca: Path | None) -> str | None:
    """Plain words for a failed TLS handshake, or None when ``exc`` is not about TLS."""
    text = str(exc)
    trusted = f"the CA in {ca}" if ca is not None else "the system's trusted CAs"
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = getattr(exc, "verify_message", None) or text
        return f"TLS: {where}'s certificate is not trusted by {trusted} ({reason})"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"TLS: {where} does not speak TLS (a plaintext service?)"
    if "CERTIFICATE_REQUIRED" in text or "certificate required" in text:
        return f"TLS: {where} requires a client certificate (give cert= and key=)"
    if "UNKNOWN_CA" in text or "BAD_CERTIFICATE" in text:
        return f"TLS: {where} does not trust this side's client certificate"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or text}"
    if "[SSL" in text:  # wrapped by a library into its own error type, text kept
        return f"TLS handshake with {where} failed: {text}"
    return None


def _readable(url: str, path: Path, what: str) -> int:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise LinkError(url, f"{what} {path} not found") from None
    except OSError as exc:
        raise LinkError(url, f"cannot use {what} {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise LinkError(url, f"{what} {path} is not a regular file")
    return info.st_mode
