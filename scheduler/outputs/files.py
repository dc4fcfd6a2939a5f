"""Temporary files that become an exam's outputs: created readable, as an ordinary ``open``
would (``0o644`` less the process umask), never over an existing name.

``tempfile.mkstemp`` creates ``0600`` files, which a forwarding service running as another
user cannot read, and changing the mode afterwards needs the umask, which a process can only
read by setting it (racing other threads) or from ``/proc``. Creating the file with the mode
lets the kernel apply the umask.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["FILE_MODE", "create_temporary"]

#: mode of an output file before the umask applies
FILE_MODE = 0o644
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def create_temporary(path: Path) -> tuple[int, Path]:
    """A new file ``.NAME.RANDOM.tmp`` beside ``path``, open for writing: (fd, its path)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _FLAGS, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")
