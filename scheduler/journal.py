"""events.jsonl: every command, device event and capture, one JSON object per line, as it happens.

Lines are flushed as written (a process kill loses nothing already written); lines about
fire-once actions, captures, state changes and faults are also fsynced (which kinds:
:data:`scheduler.exam.events.DURABLE_KINDS`), so after a machine crash the journal still says
what was done to the patient. ``fluoroctl resume`` rebuilds an exam from this file alone (see
scheduler/recovery.py).

The journal is the exam event stream's durable subscriber: the event bus
(:mod:`scheduler.exam.bus`) stamps each event and hands its line to :meth:`Journal.write`
before anyone else sees it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class ExamEvent(BaseModel):
    """One line of the journal."""

    model_config = ConfigDict(frozen=True)

    seq: int
    t_s: float  # loop-monotonic time (virtual under the simulator)
    wall: str  # ISO 8601 UTC, from the clock's wall anchor
    source: str  # "scheduler", "operator", "safety" or a device name
    kind: str
    step: str | None = None
    data: dict[str, Any] = {}


class JournalWriteError(OSError):
    """The journal could not take a line (disk full, I/O error); nothing torn was left."""


#: space held back beside the journal so that the exam's last lines (abort, exam_finished)
#: and its summary can still be written when the disk fills up
RESERVE_BYTES = 1 << 20
RESERVE_SUFFIX = ".reserve"


class Journal:
    """Append-only, line-atomic: a line is on disk whole or not at all.

    Each line goes out in one ``write(2)`` on an ``O_APPEND`` descriptor; a write that fails
    part-way (disk full) is cut back to the last whole line. A reserve file of
    ``RESERVE_BYTES`` is allocated beside the journal when it opens and given back the first
    time the disk is full, so the lines that close the record still fit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._reserve = path.with_name(path.name + RESERVE_SUFFIX)
        #: the disk filled up: the reserve was given back to write this journal's lines
        self.out_of_space = False
        self._hold_reserve()

    def write(self, line: ExamEvent, *, fsync: bool) -> None:
        """Append ``line`` whole (or raise :class:`JournalWriteError` leaving nothing torn);
        with ``fsync`` it is on the disk when this returns. A closed journal takes nothing."""
        if self._fd is not None:
            self._append((line.model_dump_json() + "\n").encode(), fsync=fsync)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
                self._reserve.unlink(missing_ok=True)

    def _append(self, line: bytes, *, fsync: bool) -> None:
        assert self._fd is not None
        for attempt in (1, 2):
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, "short write", str(self.path))
                self._size += written
                if fsync:
                    os.fsync(self._fd)
                return
            except OSError as exc:
                os.ftruncate(self._fd, self._size)  # never leave a torn line behind
                if attempt == 1 and exc.errno in _FULL and self._release_reserve():
                    continue
                raise JournalWriteError(
                    exc.errno or errno.EIO, f"cannot append to {self.path}: {exc.strerror or exc}"
                ) from exc

    def _hold_reserve(self) -> None:
        try:
            with self._reserve.open("wb") as f:
                f.write(bytes(RESERVE_BYTES))  # written, not sparse: the blocks are really taken
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self._reserve.unlink(missing_ok=True)  # a full disk is caught at the next check

    def _release_reserve(self) -> bool:
        try:
            self._reserve.unlink()
        except FileNotFoundError:
            return False
        self.out_of_space = True
        return True


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
