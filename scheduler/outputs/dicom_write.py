"""Writing an image: a temporary file, fsync, a hard link to its name (never replacing one),
then the folder fsynced.

Files are made readable by others (mode ``0o644`` less the process umask, as an ordinary
``open`` would: ``0644`` under the usual umask 022; :mod:`.files`), so a forwarding service
running as another user can send them; folders are created ``0o777`` less the umask
(``0755``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..records import CaptureRecord, ExamInfo
from .dicom import build_attributes
from .dicom_encode import write_image
from .dicom_series import SeriesIndex
from .dicom_values import exam_zone
from .files import create_temporary


def capture_file_name(record: CaptureRecord) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.step_id) or "capture"
    return f"{record.instance_number:03d}-{safe}.dcm"


class ImageExistsError(FileExistsError):
    """An image file of that name exists: it was kept, not overwritten."""

    def __init__(self, path: Path, kept: Path | None) -> None:
        self.path = path
        self.kept = kept
        where = f"the new image was kept as {kept.name}" if kept else "the new image was not kept"
        super().__init__(
            errno.EEXIST, f"{path} already exists and was not overwritten; {where}", str(path)
        )

    def __str__(self) -> str:
        return str(self.args[1])


#: link() errors meaning "this file system has no hard links" (FAT, some network shares)
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK})


def _write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file to ``path`` with ``write``, complete or not at all, never replacing one.

    The file goes to a temporary name and is fsynced; then the temporary file is
    hard-linked to ``path`` (``link`` fails if the name exists, atomically: no check-then-act
    window), the temporary name removed and the directory fsynced. When ``path`` exists,
    the new image is kept under a free sibling name and :class:`ImageExistsError` says where.
    """
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if not _claim_name(tmp, path):
            kept = _keep_beside(tmp, path)
            _fsync_dir(path.parent)
            raise ImageExistsError(path, kept)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)  # make the new name itself durable


def _claim_name(tmp: Path, path: Path) -> bool:
    """Give ``tmp``'s content the name ``path``; False if ``path`` exists."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    # No hard links here: check, then rename. Only a process ignoring the exam folder's
    # lock could slip a file in between.
    if os.path.lexists(path):
        return False
    os.rename(tmp, path)
    return True


def _keep_beside(tmp: Path, path: Path) -> Path | None:
    """Keep a new image whose name was taken: ``NNN-step.conflict-K.dcm``, K the first free."""
    for k in range(1, 1000):
        candidate = path.with_name(f"{path.stem}.conflict-{k}{path.suffix}")
        if _claim_name(tmp, candidate):
            return candidate
    return None


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_capture(
    record: CaptureRecord,
    exam: ExamInfo,
    directory: Path,
    *,
    for_processing: bool = False,
    index: SeriesIndex | None = None,
) -> Path:
    """Write ``record`` as ``{instance:03d}-{step_id}.dcm`` in ``directory``; return the path.

    The file appears complete or not at all (temporary file, fsync, link, directory fsync).
    The image joins its step's series as the study's images in ``directory`` number it:
    ``index`` is the folder's :class:`.dicom_series.SeriesIndex` when the caller keeps one
    (the exam's store does), else the folder's headers are read afresh.
    An existing file of that name is never replaced: :class:`ImageExistsError` (a
    ``FileExistsError``) names it and where the new image was kept instead.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if index is None:
        index = SeriesIndex(directory, exam.study_instance_uid)
    series = index.series_for(record, exam, exam_zone(exam.study_datetime))
    attrs = build_attributes(record, exam, series, for_processing=for_processing)
    path = directory / capture_file_name(record)
    _write_atomically(path, lambda f: write_image(attrs, f))
    index.wrote(path.name, series)
    return path
