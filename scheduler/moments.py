"""The moment a journal line is about, as the record counts it.

A line's ``t_s`` is when it was written. For most lines that is the moment itself, but a
``capture`` line is written once the image is durable, which over real links is a USB
transfer later (≈ 0.3 s of wall time, 20 s of exam time at 60×). The record (summary.json's
``actual_s``) counts a film at the device-reported exposure, so every display that shows
T+ for a line — the terminal, the console — takes it from here and shows the same number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: per kind, the data fields that hold the moment, best first
_MOMENT_FIELDS: dict[str, tuple[str, ...]] = {
    "capture": ("device_s", "commanded_s"),
    "injection_confirmed": ("started_at_s",),
}


def moment_s(kind: str | None, t_s: float, data: Mapping[str, Any]) -> float:
    """The exam-clock second ``kind``'s line is about (its ``t_s`` unless it says better)."""
    for key in _MOMENT_FIELDS.get(kind or "", ()):
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return t_s
