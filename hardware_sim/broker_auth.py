"""Who may use the simulated room's broker, and on which topics: TLS files, passwords, ACL.

``secure_broker_files(directory, devices)`` prepares, under ``directory``:

- ``pki/``: a local CA, the broker's server certificate and a client certificate per identity
  (:class:`hardware_sim.pki.LocalPki`);
- ``passwords/<identity>``: each identity's random password (first line, mode 0600), created
  at first start and kept; ``passwd``: the same as Mosquitto password hashes (PBKDF2-SHA512,
  mode 0600), rewritten at each start;
- ``acl``: device identity ``D`` (one per MQTT device, named by its role) may publish only on
  ``<D's prefix>/up`` and read only ``<D's prefix>/down``; the host identity the reverse, for
  every device. Nothing else, ``$SYS`` included, is granted to anyone.

:class:`SecuredBroker` gives each identity's link options (``ca``, ``cert``, ``key``,
``username``, ``password_file``) for a ``mqtt+tls://`` URL. Secrets appear only in the files.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from .pki import LocalPki, check_identity, write_private

HOST_IDENTITY = "host"
#: Mosquitto's PBKDF2 iteration count; the passwords are 256 random bits, so key stretching
#: adds nothing against guessing and only costs the broker time per connection.
PBKDF2_ITERATIONS = 101
PASSWORD_BYTES = 32


@dataclass(frozen=True)
class BrokerSecurity:
    """The files a Mosquitto TLS listener with passwords and an ACL is configured with."""

    ca: Path
    cert: Path
    key: Path
    password_file: Path
    acl_file: Path

    def mosquitto_conf(self) -> str:
        """Config lines after ``listener PORT HOST``: TLS with client certificates required,
        passwords, the ACL, no anonymous access."""
        return (
            f"cafile {self.ca}\n"
            f"certfile {self.cert}\n"
            f"keyfile {self.key}\n"
            "require_certificate true\n"
            "tls_version tlsv1.2\n"
            "allow_anonymous false\n"
            f"password_file {self.password_file}\n"
            f"acl_file {self.acl_file}\n"
        )


@dataclass(frozen=True)
class SecuredBroker:
    security: BrokerSecurity
    pki: LocalPki
    passwords: dict[str, Path]  # identity -> its password file

    def options(self, identity: str) -> dict[str, str]:
        """Link URL options for ``identity``: TLS files, user name, password file."""
        cred = self.pki.credential(identity)
        return {
            "ca": str(self.pki.ca.absolute()),
            "cert": str(cred.cert.absolute()),
            "key": str(cred.key.absolute()),
            "username": identity,
            "password_file": str(self.passwords[identity].absolute()),
        }

    def query(self, identity: str) -> str:
        return urlencode(self.options(identity), quote_via=quote, safe="/")


def secure_broker_files(
    directory: Path, devices: Mapping[str, str], pki: LocalPki | None = None
) -> SecuredBroker:
    """PKI, passwords and ACL for the host and ``devices`` (identity -> topic prefix); the
    certificates from ``pki`` when given (shared with other TLS links), else ``directory/pki``."""
    for name, prefix in devices.items():
        check_identity(name)
        if name == HOST_IDENTITY:
            raise ValueError(f"{HOST_IDENTITY!r} is the host's identity, not a device's")
        _check_prefix(prefix)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    identities = [HOST_IDENTITY, *devices]
    pki = (pki or LocalPki(directory / "pki")).ensure(identities)
    passwords = {name: _ensure_password(directory / "passwords", name) for name in identities}
    passwd = directory / "passwd"
    write_private(
        passwd,
        "".join(
            f"{name}:{mosquitto_hash(path.read_text().splitlines()[0])}\n"
            for name, path in passwords.items()
        ).encode(),
    )
    acl = directory / "acl"
    write_private(acl, acl_text(devices).encode())
    security = BrokerSecurity(pki.ca, pki.server.cert, pki.server.key, passwd, acl)
    return SecuredBroker(security, pki, passwords)


def acl_text(devices: Mapping[str, str]) -> str:
    """Mosquitto ACL: each device its own ``/up`` (write) and ``/down`` (read); the host the
    reverse for all of them. Unlisted topics are denied."""
    lines = [f"user {HOST_IDENTITY}"]
    for prefix in devices.values():
        lines += [f"topic write {prefix}/down", f"topic read {prefix}/up"]
    for name, prefix in devices.items():
        lines += ["", f"user {name}", f"topic write {prefix}/up", f"topic read {prefix}/down"]
    return "\n".join(lines) + "\n"


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """``$7$`` PBKDF2-SHA512 hash as ``mosquitto_passwd`` writes it (Mosquitto ≥ 2.0)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def _ensure_password(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / name
    try:
        existing = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        existing = []
    if not existing or not existing[0] or path.stat().st_mode & 0o077:
        # Missing, empty or readable by others (then it may be known): a new one.
        write_private(path, (secrets.token_urlsafe(PASSWORD_BYTES) + "\n").encode())
    return path


def _check_prefix(prefix: str) -> None:
    bad = [c for c in prefix if c in "+#\0" or c.isspace()]
    if not prefix or bad or prefix.startswith(("/", "$")) or "//" in prefix:
        raise ValueError(
            f"topic prefix {prefix!r}: an ACL needs a plain prefix (no wildcards, spaces, "
            "empty levels, leading '/' or '$')"
        )
