"""Subscribers the composition layer installs around a runner (never the runner itself).

* :class:`WallClockWhilePaused`: while a person holds the exam, a virtual clock follows the
  wall (as it does while a prompt waits), so a pause neither freezes physiological time nor
  jumps it to the next deadline. Installed for exams a person controls (``fluoroctl run``,
  ``resume``); tests that schedule their resume on the loop leave it out.
* :func:`crash_after_line_from_env`: the crash-recovery test hook. With
  ``FLUOROCTL_CRASH_AFTER_EVENT=N`` in the environment the process kills itself (SIGKILL, no
  clean-up) right after the journal's N-th line is written; without it nothing is installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Mapping

from drivers import Clock

from .bus import EventBus, Recorded
from .events import StateChanged

CRASH_ENV = "FLUOROCTL_CRASH_AFTER_EVENT"


class WallClockWhilePaused:
    """Inline subscriber: real time from ``running → paused`` until the exam leaves
    ``paused``; :meth:`close` ends it in any case (the exam's record could not say so)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._wait = contextlib.ExitStack()

    def install(self, bus: EventBus) -> Callable[[], None]:
        return bus.subscribe(self, inline=True)

    def __call__(self, recorded: Recorded) -> None:
        event = recorded.event
        if not isinstance(event, StateChanged):
            return
        if event.to_state == "paused":
            self._wait.enter_context(self._clock.real_time_wait())
        elif event.from_state == "paused":
            self._wait.close()

    def close(self) -> None:
        self._wait.close()


def crash_after_line_from_env(
    bus: EventBus, environ: Mapping[str, str] = os.environ
) -> Callable[[], None] | None:
    """Install the SIGKILL-after-line hook when ``FLUOROCTL_CRASH_AFTER_EVENT`` asks for it."""
    text = environ.get(CRASH_ENV, "")
    if not text.isdigit():
        return None
    after = int(text)

    def crash(recorded: Recorded) -> None:
        if recorded.seq is not None and recorded.seq >= after:
            os.kill(os.getpid(), signal.SIGKILL)  # crash-recovery tests: die right here

    return bus.subscribe(crash, inline=True)


def install_operated_exam_hooks(bus: EventBus, clock: Clock) -> None:
    """Around an exam a person runs (``fluoroctl run``, ``resume``): the virtual clock follows
    the wall while paused, and the crash test hook when its environment variable is set.
    Both leave when the bus closes."""
    wall = WallClockWhilePaused(clock)
    wall.install(bus)
    bus.on_close(wall.close)
    crash_after_line_from_env(bus)
