"""Waking at an instant to well under a millisecond on real time (the exposure trigger).

The event loop's timers wake late by up to a few milliseconds on a loaded machine (epoll waits
in whole milliseconds, and other tasks run first). A trigger that must leave on time sleeps
until ``spin_s`` before its instant and then polls the loop clock, handing the GIL to other
threads between polls: at most ``spin_s`` of one core per trigger. Virtual time needs none of
this (its timers are exact).

While it polls, the interpreter's thread switch interval is cut to :data:`SWITCH_S`: a thread
running Python (an image being stored, a frame being developed) keeps the GIL up to the switch
interval, 5 ms by default, once the trigger has handed it over.
"""

from __future__ import annotations

import asyncio
import sys
import time

from .clock import Clock

#: Real seconds before the instant at which the timer stops sleeping and starts polling: above
#: the loop timer's lateness measured on the shared 2-core machine (bench/bench_trigger.py:
#: p99 6.3 ms, max 10 ms; with 4 ms the trigger's own p99 was 2.4 ms late).
SPIN_S = 0.010
#: The thread switch interval while a trigger polls (seconds; CPython's default is 0.005).
SWITCH_S = 0.0002

_spinning = 0
_saved_switch = 0.0


async def sleep_until_precise(clock: Clock, deadline: float, spin_s: float = SPIN_S) -> float:
    """Sleep until loop time ``deadline``; returns the lateness (loop seconds, ≥ 0)."""
    if clock.is_virtual:
        return await clock.sleep_until(deadline)
    global _spinning, _saved_switch
    loop = asyncio.get_running_loop()
    await clock.sleep_until(deadline - spin_s * clock.time_scale)
    if _spinning == 0:
        _saved_switch = sys.getswitchinterval()
        sys.setswitchinterval(min(_saved_switch, SWITCH_S))
    _spinning += 1
    try:
        while loop.time() < deadline:
            # a zero sleep only releases the GIL (executor threads keep rendering and storing)
            time.sleep(0)  # noqa: ASYNC251
    finally:
        _spinning -= 1
        if _spinning == 0:
            sys.setswitchinterval(_saved_switch)
    return loop.time() - deadline
