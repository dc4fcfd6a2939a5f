"""One controller per exam folder, and a new exam never lands on an old one.

An exam folder (``--out``) is driven by one process at a time: whoever holds an exclusive
``fcntl.flock`` on ``DIR/.fluoroctl.lock`` (the holder's PID is written in it, for the
message the next one gets). The lock belongs to the open file, so it dies with the process
— a ``kill -9`` leaves no stale lock — and it is taken before anything in the folder is
written (``run``: before the first device opens; ``resume``: before a torn journal line is
cut). The lock file itself is never removed: unlinking a flock file lets a third process
lock a new inode while a second still holds the old one.

``run`` claims a folder with :func:`claim_new_exam_folder`: a folder that already holds an
exam is refused, or with ``force_new`` moved aside whole (renamed to a unique sibling
``DIR.old-YYYYmmddTHHMMSS``); nothing is ever deleted or overwritten. ``resume`` locks the
existing folder with :func:`lock_exam_folder`; :func:`probe_exam_folder` asks, touching
nothing, whether another process holds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = [
    "LOCK_FILE",
    "ExamFolderBusy",
    "ExamFolderError",
    "ExamFolderLock",
    "claim_new_exam_folder",
    "holds_exam",
    "lock_exam_folder",
    "probe_exam_folder",
]

LOCK_FILE = ".fluoroctl.lock"
#: what makes a folder an exam's: its record, its images, its results
_EXAM_MARKERS = ("events.jsonl", "summary.json")


class ExamFolderError(Exception):
    """The exam folder cannot be used; the one-line message says why (CLI: exit 2)."""


class ExamFolderBusy(ExamFolderError):
    """Another process controls this exam folder."""

    def __init__(self, folder: Path, pid: int | None) -> None:
        self.folder = folder
        self.pid = pid
        who = f"PID {pid}" if pid is not None else "another process (PID unknown)"
        super().__init__(f"exam folder {folder} in use by {who}")


class ExamFolderLock:
    """An exclusive lock on one exam folder, held until :meth:`release` or the process ends.

    A lock object that is dropped without :meth:`release` keeps the folder locked for the
    rest of the process's life (the safe side).
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        #: where ``claim_new_exam_folder(force_new=True)`` moved the previous exam, if it did
        self.moved_aside: Path | None = None

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let the folder go (idempotent). The lock file stays; see the module docstring."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> ExamFolderLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holds_exam(folder: Path) -> list[str]:
    """The entries that make ``folder`` an exam's (journal, summary, images); [] if none."""
    found: list[str] = []
    try:
        entries = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    for name in entries:
        if name in _EXAM_MARKERS or name.lower().endswith(".dcm"):
            found.append(name)
    return found


def claim_new_exam_folder(out_dir: Path, *, force_new: bool = False) -> ExamFolderLock:
    """Lock ``out_dir`` for a new exam, creating it if needed.

    Refused (:class:`ExamFolderError`) when ``out_dir`` is a file, cannot be created or
    written, or already holds an exam (``events.jsonl``, ``summary.json`` or any ``*.dcm``) —
    unless ``force_new``, which renames the old folder to a unique sibling
    ``DIR.old-YYYYmmddTHHMMSS`` (its content untouched) and starts an empty one. A folder
    another process holds is refused with :class:`ExamFolderBusy`, also with ``force_new``.
    """
    out_dir = Path(out_dir)
    _make_folder(out_dir)
    lock = _lock(out_dir)
    existing = holds_exam(out_dir)
    if not existing:
        return lock
    if not force_new:
        lock.release()
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise ExamFolderError(
            f"exam folder {out_dir} already holds an exam ({shown}); choose another --out, "
            f"continue it with `fluoroctl resume {out_dir}`, or pass --force-new to move it aside"
        )
    try:
        moved = _move_aside(out_dir)
    finally:
        # Held across the rename, so no other process could start in the old folder.
        lock.release()
    _make_folder(out_dir)
    new = _lock(out_dir)
    new.moved_aside = moved
    return new


def lock_exam_folder(out_dir: Path) -> ExamFolderLock:
    """Lock an existing exam folder (``resume``); :class:`ExamFolderBusy` if another holds it."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        raise ExamFolderError(f"exam folder {out_dir} does not exist")
    if not out_dir.is_dir():
        raise ExamFolderError(f"exam folder {out_dir} is not a folder")
    _check_writable(out_dir)
    return _lock(out_dir)


def probe_exam_folder(out_dir: Path) -> None:
    """Raise :class:`ExamFolderBusy` if another process holds ``out_dir``; changes nothing.

    Creates no lock file: a folder without one has never been locked, so nobody holds it.
    """
    path = Path(out_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExamFolderBusy(Path(out_dir), _holder_pid(fd)) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- internals --------------------------------------------------------------------------------


def _make_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExamFolderError(f"exam folder {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExamFolderError(
            f"exam folder {out_dir} cannot be created: {exc.strerror or exc}"
        ) from None
    _check_writable(out_dir)


def _check_writable(out_dir: Path) -> None:
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ExamFolderError(f"exam folder {out_dir} is not writable")


def _lock(out_dir: Path) -> ExamFolderLock:
    path = out_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise ExamFolderError(
            f"exam folder {out_dir}: cannot open its lock file {LOCK_FILE}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder_pid(fd)
        os.close(fd)
        raise ExamFolderBusy(out_dir, pid) from None
    except OSError as exc:
        os.close(fd)
        raise ExamFolderError(
            f"exam folder {out_dir}: cannot lock it: {exc.strerror or exc}"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without the PID; the next process's message says "unknown"
    return ExamFolderLock(out_dir, fd)


def _holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _move_aside(out_dir: Path) -> Path:
    """Rename ``out_dir`` to a sibling that did not exist; returns the new path.

    The target is first created as an empty directory (``mkdir`` fails if the name is
    taken), then replaced by the rename, so an existing folder is never renamed over.
    """
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    base = out_dir.parent / f"{out_dir.name}.old-{stamp}"
    for n in range(1, 1000):
        target = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            target.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ExamFolderError(
                f"exam folder {out_dir} cannot be moved aside to {target}: {exc.strerror or exc}"
            ) from None
        try:
            os.rename(out_dir, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                target.rmdir()  # our own empty placeholder
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue  # something was put into the placeholder meanwhile
            raise ExamFolderError(
                f"exam folder {out_dir} cannot be moved aside to {target}: {exc.strerror or exc}"
            ) from None
        return target
    raise ExamFolderError(f"exam folder {out_dir}: no free name to move it aside")
