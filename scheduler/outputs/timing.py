"""How a time after the injection is written on images, sheets and DICOM comments."""

from __future__ import annotations


def format_after_injection(seconds: float) -> str:
    """``+12 s``, ``+5 min``, ``+15 min 40 s``; negative before the injection."""
    sign = "-" if seconds < 0 else "+"
    total = round(abs(seconds))
    if total < 60:
        return f"{sign}{total} s"
    minutes, secs = divmod(total, 60)
    return f"{sign}{minutes} min" + (f" {secs:02d} s" if secs else "")
