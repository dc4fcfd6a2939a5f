"""Putting the exam folder's DICOM files into its outbox, and reading them back."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom import Dataset

from .config import DicomConfig
from .objects import NotAnObject, folder_files, read_object
from .outbox import Outbox
from .settings import OutboxSettings

log = logging.getLogger(__name__)


def settings_of(dicom: DicomConfig) -> OutboxSettings:
    """The room's ``dicom.outbox`` block, or the defaults."""
    found = getattr(dicom, "outbox", None)
    return found if isinstance(found, OutboxSettings) else OutboxSettings()


def enqueue_folder(
    outbox: Outbox,
    folder: Path,
    names: Iterable[str] | None = None,
    *,
    study_uid: str | None = None,
) -> list[str]:
    """Queue ``names`` (default: every ``.dcm`` of ``folder`` not queued yet); returns the
    names it left out, each logged: not a DICOM object, or (with ``study_uid``) another
    study's file that happens to lie in the folder."""
    if names is None:
        known = outbox.known_files()
        paths = [p for p in folder_files(folder) if p.name not in known]
    else:
        paths = [folder / n for n in names]
    skipped: list[str] = []
    for path in paths:
        try:
            obj = read_object(path)
        except NotAnObject as exc:
            log.warning("DICOM outbox: %s; not queued", exc)
            skipped.append(path.name)
            continue
        if study_uid is not None and obj.study_uid != study_uid:
            log.warning("DICOM outbox: %s belongs to another study; not queued", path)
            skipped.append(path.name)
            continue
        outbox.enqueue(obj)
    return skipped


def message_headers(outbox: Outbox, folder: Path) -> list[Dataset]:
    """The queued objects' headers (no pixels), in the order they were queued."""
    headers: list[Dataset] = []
    for name in outbox.files():
        try:
            headers.append(pydicom.dcmread(folder / name, stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            log.warning("DICOM outbox: %s unreadable for MPPS: %s", name, exc)
    return headers
