"""When a step is due, and what a film past its time point becomes. Pure functions.

Time points are absolute loop times: the injector-confirmed injection start plus the step's
``at``. A film is *due* at its time point; it is taken as soon as the view is ready and the
time point reached. Past it:

* late through no fault of the room's (a pause, or the controlling process was down): the
  protocol's ``when_paused`` decides — ``take_late`` takes it up to ``late_window_s`` (default
  ``tolerance_s``) late, ``miss`` records it missed;
* late because preparing the view took too long: taken within ``tolerance_s``, else missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class NoAnchor(Exception):
    """A timed step, but the injection never started: there is no time point."""


def time_point(anchor_s: float | None, at_s: float) -> float:
    """The loop time a step ``at_s`` after the injection start is due."""
    if anchor_s is None:
        raise NoAnchor("timed step but the injection never started")
    return anchor_s + at_s


def held_reason(deadline_s: float, paused_s: float, resumed_at_s: float | None) -> str | None:
    """Why a film is past its time point through no fault of the room, if it is."""
    if paused_s > 0:
        return "fell due while the exam was paused"
    if resumed_at_s is not None and deadline_s < resumed_at_s:
        return "fell due while the controlling process was down (restart)"
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a film at ``now``: ``take`` it or ``miss`` it, and why."""

    action: Literal["take", "miss"]
    detail: str = ""
    #: taken past its tolerance inside its late window (its status stays "done")
    late_window: bool = False


TAKE = Verdict("take")


def late_verdict(
    *,
    deadline_s: float | None,
    now_s: float,
    tolerance_s: float,
    late_window_s: float,
    when_paused: str,
    held: str | None,
) -> Verdict:
    """Take or miss a film whose view is ready at ``now_s`` (see the module docstring)."""
    if deadline_s is None or now_s <= deadline_s:
        return TAKE
    late = now_s - deadline_s
    if held is not None:
        if when_paused == "miss" or late > late_window_s:
            return Verdict(
                "miss",
                f"{held} ({late:.1f} s late; policy {when_paused}, "
                f"late window {late_window_s:g} s)",
            )
        if late > tolerance_s:
            return Verdict("take", f"taken {late:.1f} s late: {held}", late_window=True)
        return TAKE
    if late > tolerance_s:
        return Verdict(
            "miss",
            f"preparation ended {late:.1f} s after the planned time (tolerance {tolerance_s:g} s)",
        )
    return TAKE


def retry_in_window(retry_at_s: float, deadline_s: float | None, window_s: float) -> bool:
    """An acquisition the device refused may be tried again at ``retry_at_s``."""
    return deadline_s is None or retry_at_s <= deadline_s + window_s


def status_after_capture(
    lateness_s: float | None, tolerance_s: float, late_window_s: float | None, taken_late: bool
) -> str:
    """``late`` when the command went out past the step's tolerance (or its late window,
    for a film taken late on purpose), else ``done``."""
    if late_window_s is not None and taken_late:
        tolerance_s = max(tolerance_s, late_window_s)
    return "late" if lateness_s is not None and lateness_s > tolerance_s else "done"
