"""Which series an image joins: one series per protocol step (and patient position).

The scout, each timed film, the prone film, each fluoroscopy run's step and each
tomosynthesis sweep (all its layers) are a series of their own, described by the step's
title. The Series Instance UID is derived from the study, the step and the position
(:func:`~.dicom_ids.series_uid_for`), so a series never mixes patient positions.

Series Number, Date and Time are the series' own: the first image of a series numbers it
one past the highest series number of the study's images already in the exam folder and
dates it by its acquisition; every later image of the series (a further layer of the sweep,
an image written after a restart) copies them from the series' images in the folder. The
folder is the record, so numbering survives ``fluoroctl resume`` without any other state.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import UID

from ..records import CaptureRecord, ExamInfo
from .dicom_ids import series_uid_for
from .dicom_values import _da, _lo, _local, _tm

__all__ = ["SeriesInfo", "new_series", "series_description", "series_in_folder"]

_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime"]
#: headers remembered (a few hundred bytes each), by file identity
_HEADER_CACHE = 4096
_HEADERS: OrderedDict[tuple[str, int, int, int, int], pydicom.Dataset | None] = OrderedDict()


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """The General Series attributes an image carries."""

    uid: UID
    number: int
    description: str
    date: str  # DA, local
    time: str  # TM, local


def series_description(record: CaptureRecord) -> str:
    """The step's title: a tomo layer's label without its layer height."""
    label = record.label or record.step_id
    if record.tomo is not None:
        label = label.removesuffix(f" {record.tomo.layer_height_mm / 10:g} cm")
    return _lo(label)


def new_series(record: CaptureRecord, exam: ExamInfo, number: int, zone: dt.tzinfo) -> SeriesInfo:
    """The series ``record`` starts, numbered ``number`` and dated by its acquisition."""
    started = _local(record.acquisition_time, zone)
    return SeriesInfo(
        series_uid_for(exam, record), number, series_description(record), _da(started), _tm(started)
    )


def series_in_folder(
    record: CaptureRecord, exam: ExamInfo, directory: Path, zone: dt.tzinfo
) -> SeriesInfo:
    """The series ``record`` belongs to, given the study's images already in ``directory``."""
    uid = series_uid_for(exam, record)
    highest = 0
    for ds in _study_images(directory, exam.study_instance_uid):
        number = _number(ds)
        if str(ds.get("SeriesInstanceUID", "")) == uid and number is not None:
            return SeriesInfo(
                uid,
                number,
                series_description(record),
                str(ds.get("SeriesDate", "")),
                str(ds.get("SeriesTime", "")),
            )
        highest = max(highest, number or 0)
    return new_series(record, exam, highest + 1, zone)


def _study_images(directory: Path, study_uid: str) -> list[pydicom.Dataset]:
    """Headers of the study's images in ``directory`` (unreadable or foreign files skipped)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found: list[pydicom.Dataset] = []
    for name in names:
        if name.startswith(".") or not name.lower().endswith(".dcm"):
            continue
        ds = _header(directory / name)
        if ds is not None and str(ds.get("StudyInstanceUID", "")) == study_uid:
            found.append(ds)
    return found


def _header(path: Path) -> pydicom.Dataset | None:
    """The series attributes of a regular file; None for anything else (a FIFO would block
    a plain open, a symlink may point anywhere) or a file that is not readable DICOM.

    Headers are remembered by the file's identity (device, inode, size, mtime): an exam
    folder is re-read at every image, and parsing each earlier image's header again made a
    write's cost grow with the exam (≈ 1 ms per image already stored). A file changed or
    replaced since has another identity and is read again.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in _HEADERS:
            _HEADERS.move_to_end(key)
            return _HEADERS[key]
        with os.fdopen(os.dup(fd), "rb") as f:
            try:
                ds: pydicom.Dataset | None = pydicom.dcmread(
                    f, stop_before_pixels=True, specific_tags=_TAGS
                )
            except Exception:  # a damaged or foreign file says nothing about our series
                ds = None
        _HEADERS[key] = ds
        while len(_HEADERS) > _HEADER_CACHE:
            _HEADERS.popitem(last=False)
        return ds
    except OSError:
        return None
    finally:
        os.close(fd)


def _number(ds: pydicom.Dataset) -> int | None:
    try:
        return int(str(ds.get("SeriesNumber")))
    except (TypeError, ValueError):
        return None
