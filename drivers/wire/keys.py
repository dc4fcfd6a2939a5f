"""The room secret: one 256-bit key file per room, shared by the host and the room's devices.

The file is text, so it survives copying between machines and is easy to put into a device's
provisioning tool::

    fluoroctl-room-key 1
    <64 hex digits>

It is created with mode 0600 (``fluoroctl keys new ROOM``) and refused when anyone but its
owner may read or write it (as OpenSSH refuses a private key with loose permissions): a key
others can read authenticates nobody. The key itself never appears in YAML, logs, journals or
error messages; what is shown is its fingerprint (the first 8 bytes of SHA-256 over the key,
hex), enough to tell two rooms' keys apart.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

KEY_BYTES: Final = 32
MAGIC: Final = "fluoroctl-room-key 1"


class KeyFileError(ValueError):
    """The key file is missing, malformed or readable by others; the message says which."""


@dataclass(frozen=True)
class RoomKey:
    secret: bytes = field(repr=False)
    path: Path | None = None

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise KeyFileError(f"a room key is {KEY_BYTES} bytes, not {len(self.secret)}")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:16]

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"room key {self.fingerprint}{where}"


def generate() -> RoomKey:
    return RoomKey(secrets.token_bytes(KEY_BYTES))


def write_key_file(path: Path, key: RoomKey | None = None, *, force: bool = False) -> RoomKey:
    """Create ``path`` holding ``key`` (a new random one by default), mode 0600.

    An existing file is kept (:class:`KeyFileError`) unless ``force``: replacing a room's key
    locks every device provisioned with the old one out.
    """
    key = key or generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"{MAGIC}\n{key.secret.hex()}\n".encode("ascii")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: a key file is already there (--force replaces it)") from None
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask; an old file keeps its own
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)
    return RoomKey(key.secret, path)


def ensure_key_file(path: Path) -> RoomKey:
    """The key in ``path``, created first if there is none (``sim serve``'s run directory)."""
    try:
        return write_key_file(path)
    except KeyFileError:
        return load_key_file(path)


def load_key_file(path: Path) -> RoomKey:
    """Read and check ``path``; every problem is one :class:`KeyFileError` line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no such key file (create one: fluoroctl keys new ROOM)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot open the key file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read or change the "
                f"room key; make it 0600 (chmod 600 {path})"
            )
        if info.st_uid != os.geteuid():
            raise KeyFileError(f"{path}: owned by uid {info.st_uid}, not by this user")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    lines = data.decode("ascii", errors="replace").split()
    if len(lines) != 3 or " ".join(lines[:2]) != MAGIC:
        raise KeyFileError(f"{path}: not a fluoroctl room key file (first line {MAGIC!r})")
    try:
        secret = bytes.fromhex(lines[2])
    except ValueError:
        raise KeyFileError(f"{path}: the key is not hexadecimal") from None
    if len(secret) != KEY_BYTES:
        raise KeyFileError(f"{path}: the key is {len(secret)} bytes, not {KEY_BYTES}")
    return RoomKey(secret, path)
