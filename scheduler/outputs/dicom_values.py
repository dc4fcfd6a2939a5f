"""DICOM value representations (DA, TM, DT, DS, LO, SH, AS) from Python values."""

from __future__ import annotations

import datetime as dt

from pydicom.valuerep import format_number_as_ds

# -- value formatting -------------------------------------------------------------------------


def exam_zone(exam_start: dt.datetime) -> dt.timezone:
    """The room's local time zone as a fixed offset: the process's local zone at the exam start.

    One offset serves every value of the exam's objects (Timezone Offset From UTC applies to
    the whole instance), so an exam across a daylight-saving change keeps its start's
    offset: each value is still the right instant, written in that offset. A naive
    ``exam_start`` is taken to be UTC.
    """
    offset = _aware(exam_start).astimezone().utcoffset() or dt.timedelta(0)
    return dt.timezone(offset)


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _local(t: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """``t`` in ``zone`` (a naive ``t`` is taken to be UTC)."""
    return _aware(t).astimezone(zone)


def _offset(zone: dt.tzinfo) -> str:
    """Timezone Offset From UTC (0008,0201): ``+HHMM`` / ``-HHMM``."""
    return dt.datetime(2000, 1, 1, tzinfo=zone).strftime("%z")


def _da(t: dt.datetime | dt.date) -> str:
    """DA of a date, or of a (local) datetime's date."""
    return t.strftime("%Y%m%d")


def _tm(t: dt.datetime) -> str:
    """TM of a (local) datetime, to the microsecond."""
    return t.strftime("%H%M%S.%f")


def _dt(t: dt.datetime) -> str:
    """DT of an aware datetime with its UTC offset, e.g. ``20260304103000.000000+0100``."""
    return _aware(t).strftime("%Y%m%d%H%M%S.%f%z")


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
