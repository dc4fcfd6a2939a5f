"""``@virtual_time``: an ``async def`` test run on a fresh :class:`VirtualTimeEventLoop`.

Timers fire exactly when due and the loop jumps over idle time, so a test can assert how
long something took in loop time (a heartbeat loss after 0.3 s, re-sends 100 ms apart)
without depending on how busy the machine is. Only for tests whose peers all live in the
loop (the in-memory cable); a real pty, socket or thread needs the real clock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from drivers import VirtualTimeEventLoop

P = ParamSpec("P")
T = TypeVar("T")


def virtual_time(test: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run ``test`` to completion on its own virtual-time loop (fixtures pass through)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        loop = VirtualTimeEventLoop()
        try:
            return loop.run_until_complete(test(*args, **kwargs))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return run
