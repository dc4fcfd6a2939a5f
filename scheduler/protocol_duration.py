"""Durations in protocol files: ``12s``, ``5min``, ``1h30min`` or seconds, at most a day."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import Field, WithJsonSchema

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*min)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)


#: Longest duration a protocol may give: a day covers the latest delayed film (24 h in
#: obstruction work-ups); anything beyond is a typo, not a plan.
MAX_DURATION_S = 24 * 3600.0


def parse_duration(value: object) -> float:
    """``12s``, ``5min``, ``1h30min``, ``2min30s`` or a plain number of seconds.

    The result is finite and within 0 … :data:`MAX_DURATION_S` (24 h), else ValueError.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value)) and any(m.groups()):
            h, mins, s = (float(g) if g else 0.0 for g in m.groups())
            seconds = h * 3600 + mins * 60 + s
        else:
            raise ValueError(f"invalid duration {_short(value)} (use e.g. 12s, 5min, 1h30min)")
    except OverflowError:  # an integer too large for a float
        seconds = math.inf
    shown = _short(value)
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be a finite number of seconds, got {shown}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {shown}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration {shown} is longer than the 24 h maximum")
    return seconds


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: What editors see: a number of seconds or the duration grammar (the 24 h cap on strings is
#: checked by parse_duration; a regular expression cannot compare numbers).
_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
        {
            "type": "string",
            "pattern": r"^(?=\s*\d)\s*(?:\d+(?:\.\d+)?\s*h)?\s*(?:\d+(?:\.\d+)?\s*min)?"
            r"\s*(?:\d+(?:\.\d+)?\s*s)?\s*$",
        },
    ]
}
Duration = Annotated[float, Field(ge=0, le=MAX_DURATION_S), WithJsonSchema(_DURATION_SCHEMA)]
