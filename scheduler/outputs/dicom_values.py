"""DICOM value representations (DA, TM, DT, DS, LO, SH, AS) from Python values."""

from __future__ import annotations

import datetime as dt

from pydicom.valuerep import format_number_as_ds

# -- value formatting -------------------------------------------------------------------------


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _da(t: dt.datetime | dt.date) -> str:
    return t.strftime("%Y%m%d")


def _tm(t: dt.datetime) -> str:
    return _utc(t).strftime("%H%M%S.%f")


def _dt(t: dt.datetime) -> str:
    return _utc(t).strftime("%Y%m%d%H%M%S.%f+0000")


def _ds(x: float) -> str:
    return format_number_as_ds(round(float(x), 6))


def _text(s: str, limit: int) -> str:
    """A string-VR value: no backslash (the value delimiter), no control chars, length-capped."""
    clean = "".join(" " if ord(c) < 32 else c for c in s.replace("\\", "/")).strip()
    return clean[:limit].rstrip()


def _lo(s: str) -> str:
    return _text(s, 64)


def _sh(s: str) -> str:
    return _text(s, 16)


def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(0, min(999, years)):03d}Y"
