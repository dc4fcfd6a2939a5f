"""What the outbox needs to know about a DICOM file in the exam folder, read from the file.

The folder is the truth: an object is whatever ``*.dcm`` file the exam wrote (images, the
dose SR, anything added later), identified by its own SOP Instance UID.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

#: the exam folder's DICOM objects: its top-level ``.dcm`` files
PATTERN = "*.dcm"


@dataclass(frozen=True, slots=True)
class DicomObject:
    file: str  # name in the exam folder
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    study_uid: str


class NotAnObject(ValueError):
    """The file cannot be read as a DICOM object with the UIDs a C-STORE needs."""


def read_object(path: Path) -> DicomObject:
    """The UIDs of ``path`` (header only); :class:`NotAnObject` when it has none."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        meta = ds.file_meta
        return DicomObject(
            file=path.name,
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            transfer_syntax=str(meta.TransferSyntaxUID),
            study_uid=str(ds.StudyInstanceUID),
        )
    except (OSError, InvalidDicomError, AttributeError, KeyError, ValueError) as exc:
        raise NotAnObject(f"{path}: not a storable DICOM object ({exc})") from None


def folder_files(folder: Path) -> Iterator[Path]:
    """The folder's DICOM files, in name order (the exam's instance order)."""
    yield from sorted(p for p in folder.glob(PATTERN) if p.is_file())
