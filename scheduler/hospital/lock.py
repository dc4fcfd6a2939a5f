"""One sender per exam folder: an advisory lock beside the outbox.

Two senders on one outbox would not lose anything (delivery is at least once) but would
store objects twice; the exam's own process holds this lock while its sender runs, and
``fluoroctl dicom flush`` refuses to start while another holds it. The kernel releases the
lock when its holder dies (kill -9 included), so a crash never leaves a folder locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

FILE_NAME = "dicom-outbox.lock"


class SenderLock:
    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The holding process's id as it wrote it (best effort)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
