"""When a step is due, and what a film past its time point becomes. Pure functions.

Time points are absolute loop times: the injector-confirmed injection start plus the step's
``at``. A film is *due* at its time point; it is taken as soon as the view is ready and the
time point reached. Past it:

* late through no fault of the room's (a pause, or the controlling process was down): the
  protocol's ``when_paused`` decides — ``take_late`` takes it up to ``late_window_s`` (default
  ``tolerance_s``) late, ``miss`` records it missed;
* late because preparing the view took too long: taken within ``tolerance_s``, else missed.

The command itself (:func:`choose_trigger`): the scheduler wakes :func:`command_lead_s` before
the time point, checks and journals, then either arms a timed exposure on a C-arm that takes
one (the beam comes on at the time point by the device's own clock), or sends the command
early by the C-arm's declared exposure latency, or at the time point (decision 0016).
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


# -- the trigger: when an acquisition's command leaves ----------------------------------------
#: Wall seconds before a timed acquisition's command is due that the scheduler wakes: enough
#: for the safety checks (two status round trips), the fsynced journal line (decision 0007)
#: and a clock re-sync (four ``link.ping``), measured at a few milliseconds on real links.
COMMAND_LEAD_S = 0.25
#: On a scaled clock the lead is at most this many wall leads of loop time: a 60× rehearsal
#: wakes 5 simulated seconds early (83 ms of wall time for the checks, the fsync and the
#: link), not 15, so a pause or skip that close to a film is still honoured.
MAX_LEAD_SCALE = 20.0
#: A timed exposure is armed only if its hand-switch moment is at least this far (wall s)
#: ahead when the command leaves: the request's trip and the device's checks.
MIN_ARM_S = 0.005

Mode = Literal["timed", "early", "immediate"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """How an acquisition's command goes out.

    ``timed``: sent now, armed for the beam to come on at ``due_s`` (the time point) by the
    device's own timer; ``early``: sent at ``due_s`` = time point minus the C-arm's declared
    exposure latency; ``immediate``: sent at ``due_s`` (the time point), or at once when None
    (untimed, or already past).
    """

    mode: Mode
    due_s: float | None = None

    @property
    def send_at_s(self) -> float | None:
        """When the command must leave (None: at once)."""
        return None if self.mode == "timed" else self.due_s


def command_lead_s(exposure_latency_s: float, time_scale: float) -> float:
    """Loop seconds before a time point the scheduler wakes to prepare its command."""
    return exposure_latency_s + COMMAND_LEAD_S * min(time_scale, MAX_LEAD_SCALE)


def choose_trigger(
    *,
    deadline_s: float | None,
    now_s: float,
    exposure_latency_s: float,
    timed_ok: bool,
    time_scale: float = 1.0,
) -> Trigger:
    """The trigger for a command being prepared at ``now_s`` for time point ``deadline_s``.

    ``exposure_latency_s`` is the C-arm's declared command-to-beam-on latency (0 for kinds
    that are not compensated); ``timed_ok``: the C-arm takes a timed exposure right now.
    """
    if deadline_s is None:
        return Trigger("immediate")
    switch_at = deadline_s - exposure_latency_s
    if timed_ok and switch_at - now_s >= MIN_ARM_S * time_scale:
        return Trigger("timed", deadline_s)
    if exposure_latency_s > 0:
        return Trigger("early", switch_at)
    return Trigger("immediate", deadline_s)
