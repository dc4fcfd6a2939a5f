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
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import UID

from ..records import CaptureRecord, ExamInfo
from .dicom_ids import series_uid_for
from .dicom_values import _da, _lo, _local, _tm

__all__ = ["SeriesIndex", "SeriesInfo", "new_series", "series_description"]

_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime"]


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


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one image file says about its series (None fields: it does not say)."""

    uid: str
    number: int | None
    date: str
    time: str


class SeriesIndex:
    """The series of one study's images in one folder, read once and then kept up to date.

    The exam's store keeps one for its folder. Every write still lists the folder, so an image
    another writer put there (a resumed exam's, a dose report's) is read and counted, but only
    the headers of names not seen before are read: reading every image's header at every write
    made a write's cost grow with the exam. A name already seen is not read again; fluoroctl
    never replaces a file (images are linked into place, never renamed over), and a name that
    disappears from the listing is forgotten.
    """

    def __init__(self, directory: Path, study_uid: str) -> None:
        self._dir = Path(directory)
        self._study = study_uid
        self._seen: dict[str, _Entry | None] = {}

    def series_for(self, record: CaptureRecord, exam: ExamInfo, zone: dt.tzinfo) -> SeriesInfo:
        """The series ``record`` joins: its own if an image of it is in the folder, else a new
        one numbered one past the study's highest."""
        uid = series_uid_for(exam, record)
        highest = 0
        for entry in self._entries():
            if entry.uid == uid and entry.number is not None:
                return SeriesInfo(
                    uid, entry.number, series_description(record), entry.date, entry.time
                )
            highest = max(highest, entry.number or 0)
        return new_series(record, exam, highest + 1, zone)

    def wrote(self, name: str, series: SeriesInfo) -> None:
        """``name`` was just written into the folder as an image of ``series``."""
        self._seen[name] = _Entry(str(series.uid), series.number, series.date, series.time)

    def _entries(self) -> list[_Entry]:
        """The study's images in the folder, by name (unreadable or foreign files skipped)."""
        try:
            names = sorted(
                n
                for n in os.listdir(self._dir)
                if not n.startswith(".") and n.lower().endswith(".dcm")
            )
        except OSError:
            return []
        if self._seen.keys() != set(names):
            self._seen = {n: self._seen[n] if n in self._seen else self._read(n) for n in names}
        return [e for n in names if (e := self._seen[n]) is not None]

    def _read(self, name: str) -> _Entry | None:
        ds = _header(self._dir / name)
        if ds is None or str(ds.get("StudyInstanceUID", "")) != self._study:
            return None
        return _Entry(
            str(ds.get("SeriesInstanceUID", "")),
            _number(ds),
            str(ds.get("SeriesDate", "")),
            str(ds.get("SeriesTime", "")),
        )


def _header(path: Path) -> pydicom.Dataset | None:
    """The series attributes of a regular file; None for anything else (a FIFO would block
    a plain open, a symlink may point anywhere) or a file that is not readable DICOM."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            try:
                return pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_TAGS)
            except Exception:  # a damaged or foreign file says nothing about our series
                return None
    except OSError:
        return None
    finally:
        os.close(fd)


def _number(ds: pydicom.Dataset) -> int | None:
    try:
        return int(str(ds.get("SeriesNumber")))
    except (TypeError, ValueError):
        return None
