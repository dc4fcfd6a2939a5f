"""The clock every waiting party shares: real, scaled or virtual time.

The clock *is* the event loop's clock. Scheduler and simulated devices only ever wait through
the loop (``asyncio.sleep``, ``asyncio.timeout``, :meth:`Clock.sleep_until`), so swapping the
loop swaps time for all of them at once:

* real time: the default loop (equipment);
* :class:`ScaledTimeEventLoop`: loop time runs ``scale`` times faster than the wall
  (rehearsal over real links);
* :class:`VirtualTimeEventLoop`: loop time jumps to the next timer whenever nothing is
  runnable, so an hour-long exam on the in-process simulator runs in seconds.

See docs/decisions/0002-virtual-time-loop.md for why this is a loop of our own and not
looptime.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import selectors
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Clock:
    """Monotonic loop time plus a wall-clock anchor for timestamps (DICOM, journal).

    ``wall_at(t)`` maps loop time to an aware UTC datetime, so a virtual exam carries
    consistent acquisition date-times without touching the system clock.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, wall_anchor: dt.datetime | None = None
    ) -> None:
        self._loop = loop
        self._mono_anchor = loop.time()
        self._wall_anchor = wall_anchor or dt.datetime.now(dt.UTC)
        if self._wall_anchor.tzinfo is None:
            raise ValueError("wall_anchor must be timezone-aware")

    @classmethod
    def for_running_loop(cls, wall_anchor: dt.datetime | None = None) -> Clock:
        return cls(asyncio.get_running_loop(), wall_anchor)

    @property
    def is_virtual(self) -> bool:
        return isinstance(self._loop, VirtualTimeEventLoop)

    @property
    def time_scale(self) -> float:
        """Loop seconds per wall second (1 in real time, N when rehearsing N times faster).

        Link-level bounds (reply timeouts, heartbeats) are wall-clock facts of the cable, not
        of the patient: multiply them by this to get loop time.
        """
        return getattr(self._loop, "scale", 1.0)

    @property
    def mapping(self) -> dict[str, Any]:
        """How loop time relates to the machine's clocks, for a restarted process to continue.

        ``mode`` (virtual | scaled | real), ``scale`` and ``origin_monotonic``: loop time is
        ``(time.monotonic() - origin_monotonic) * scale`` for real and scaled loops (a real
        loop's origin is 0); ``wall_at_loop0`` maps loop time to UTC for every mode.
        """
        loop = self._loop
        if isinstance(loop, VirtualTimeEventLoop):
            mode, origin = "virtual", None
        elif isinstance(loop, ScaledTimeEventLoop):
            mode, origin = "scaled", loop.origin_monotonic
        else:
            # The default loop's time() is time.monotonic(): origin 0 (to the microsecond).
            mode, origin = "real", round(time.monotonic() - loop.time(), 6)
        return {
            "mode": mode,
            "scale": self.time_scale,
            "origin_monotonic": origin,
            "wall_at_loop0": self.wall_at(0.0).isoformat(),
        }

    def now(self) -> float:
        """Monotonic seconds on the shared loop clock."""
        return self._loop.time()

    def wall_at(self, t: float) -> dt.datetime:
        return self._wall_anchor + dt.timedelta(seconds=t - self._mono_anchor)

    def wall_now(self) -> dt.datetime:
        return self.wall_at(self.now())

    async def sleep_until(self, deadline: float) -> float:
        """Sleep until the absolute loop time ``deadline``; returns the lateness in s.

        Absolute deadlines do not accumulate the ~0.2 ms per tick that chained relative
        sleeps drift.
        """
        loop = self._loop
        if deadline > loop.time():
            fut: asyncio.Future[None] = loop.create_future()
            handle = loop.call_at(deadline, _set_result_if_pending, fut)
            try:
                await fut
            finally:
                handle.cancel()
        return loop.time() - deadline

    @contextmanager
    def real_time_wait(self) -> Iterator[None]:
        """While inside, a virtual clock follows the wall clock (a person is thinking)."""
        if isinstance(self._loop, VirtualTimeEventLoop):
            with self._loop.real_time_wait():
                yield
        else:
            yield


def _set_result_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _VirtualSelector(selectors.BaseSelector):
    """Wraps the loop's selector: polls without blocking and advances virtual time instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeEventLoop) -> None:
        self._inner = inner
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        loop = self._loop
        if loop._real_time_waiters:
            # A person (or other real-world party) is involved: time flows as on the wall.
            step = 0.05 if timeout is None else min(timeout, 0.05)
            t0 = time.monotonic()
            ready = self._inner.select(step)
            loop._advance(time.monotonic() - t0)
            return ready
        if loop._executor_jobs:
            # Work is running in a thread; virtual time stands still until it is done, so
            # results do not depend on how fast this machine is.
            return self._inner.select(0.001 if timeout is None else min(timeout, 0.001))
        if timeout is None:
            # Nothing scheduled at all: only I/O or another thread can wake us.
            return self._inner.select(None)
        loop._advance(timeout)
        return []


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever the loop would block.

    Timers therefore fire exactly on time (lateness 0 in loop time). Work in executor
    threads takes zero virtual time; use :meth:`real_time_wait` around waits for a human.
    """

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._virtual_now = float(start)
        self._executor_jobs = 0
        self._real_time_waiters = 0
        self._selector: selectors.BaseSelector = _VirtualSelector(self._selector, self)

    def time(self) -> float:
        return self._virtual_now

    def _advance(self, seconds: float) -> None:
        if seconds > 0:
            self._virtual_now += seconds

    def run_in_executor(  # type: ignore[override]  # same call shape, simpler generics
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        fut = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1
        fut.add_done_callback(self._executor_done)
        return fut

    def _executor_done(self, _fut: asyncio.Future[Any]) -> None:
        self._executor_jobs -= 1

    @contextmanager
    def real_time_wait(self) -> Iterator[None]:
        self._real_time_waiters += 1
        try:
            yield
        finally:
            self._real_time_waiters -= 1


class ScaledTimeEventLoop(asyncio.SelectorEventLoop):
    """Loop time runs ``scale`` times faster than the wall clock (rehearsal over real links).

    Loop time is ``(time.monotonic() - origin_monotonic) * scale``. The origin defaults to
    the moment the loop is made; a resumed exam passes the crashed process's origin (from
    its journal) so it continues on the same time axis: ``time.monotonic()`` runs on across a
    process restart on the same boot.
    """

    def __new__(cls, scale: float, origin_monotonic: float | None = None) -> ScaledTimeEventLoop:
        # Checked before the loop exists: a half-built loop warns when collected.
        if scale <= 0:
            raise ValueError(f"time scale must be positive, got {scale}")
        if origin_monotonic is not None and origin_monotonic > time.monotonic():
            raise ValueError(
                f"time origin {origin_monotonic} is in the future (monotonic now "
                f"{time.monotonic():.3f}): it comes from another boot of this machine"
            )
        return super().__new__(cls)

    def __init__(self, scale: float, origin_monotonic: float | None = None) -> None:
        super().__init__()
        self.scale = float(scale)
        self._real0 = time.monotonic() if origin_monotonic is None else float(origin_monotonic)
        self._selector: selectors.BaseSelector = _ScaledSelector(self._selector, self.scale)

    @property
    def origin_monotonic(self) -> float:
        """The ``time.monotonic()`` value at which loop time was 0."""
        return self._real0

    def time(self) -> float:
        return (time.monotonic() - self._real0) * self.scale


class _ScaledSelector(_VirtualSelector):
    def __init__(self, inner: selectors.BaseSelector, scale: float) -> None:
        self._inner = inner
        self._scale = scale

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._inner.select(None if timeout is None else timeout / self._scale)


def new_event_loop(
    mode: str = "real", *, time_scale: float = 1.0, origin_monotonic: float | None = None
) -> asyncio.AbstractEventLoop:
    """``mode`` is ``"real"``, ``"virtual"`` or ``"scaled"``.

    ``origin_monotonic`` (scaled only) continues another process's time axis; see
    :class:`ScaledTimeEventLoop`. A real-time loop's clock is ``time.monotonic()`` itself
    (origin 0), the same in every process on one boot.
    """
    if mode == "virtual":
        return VirtualTimeEventLoop()
    if mode == "scaled":
        return ScaledTimeEventLoop(time_scale, origin_monotonic)
    if mode == "real":
        return asyncio.new_event_loop()
    raise ValueError(f"unknown clock mode {mode!r} (expected real, virtual or scaled)")
