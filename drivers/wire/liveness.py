"""Heartbeats out and peer loss in: one implementation for the host and the device end (§2.5).

Both ends of a wire link do the same two things. Every period they send a HEARTBEAT (when they
can: the host needs an open link, a stalled device sends nothing), and they declare the peer
lost once no valid frame of any kind has arrived for the loss bound. :class:`Liveness` owns the
ticker task and the watchdog; what a heartbeat contains and what "lost" means (the host raises
``DeviceLost``, the device enters SAFE) stay with the caller, as callbacks.

The watchdog is a loop timer callback, not a task, so a heartbeat write stuck on a full link
cannot delay the loss decision. Durations are wall seconds of the cable, multiplied by the
clock's ``time_scale`` before waiting on the loop.

A watchdog that fires late means this end's own loop was stalled (a busy CPU, a long
collection): the peer's frames may be waiting in the kernel, and a loop runs due timers before
the reader tasks those frames wake. So a late verdict is deferred by one short settle, long
enough for the loop to read what has arrived; only silence that outlasts it is a loss. Our own
stall is not the peer's silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

#: a watchdog this late (wall seconds) found its own loop stalled
STALL_S = 0.005
#: how long a stalled watchdog lets the loop read before it decides (wall seconds)
SETTLE_S = 0.02

SendBeat = Callable[[float], Awaitable[None]]
"""``send(now)``: write one heartbeat; called only when ``may_send()`` is true."""


class Liveness:
    """The heartbeat ticker and the peer-loss watchdog of one end of a link.

    The caller stamps :attr:`last_rx` (loop time) on every valid frame it receives; it is a
    plain attribute because the receive paths are hot.
    """

    __slots__ = (
        "_due",
        "_loop",
        "_may_send",
        "_on_lost",
        "_on_period",
        "_period_s",
        "_scale",
        "_send",
        "_ticker",
        "_timeout_s",
        "_watch",
        "_watching",
        "last_rx",
    )

    def __init__(
        self,
        *,
        period_s: float,
        timeout_s: float,
        time_scale: float,
        send: SendBeat,
        may_send: Callable[[], bool],
        watching: Callable[[], bool],
        on_lost: Callable[[], None],
        on_period: Callable[[float], None] = lambda _now: None,
    ) -> None:
        self.last_rx = 0.0
        self._period_s = period_s
        self._timeout_s = timeout_s
        self._scale = time_scale
        self._send = send
        self._may_send = may_send
        self._watching = watching
        self._on_lost = on_lost
        self._on_period = on_period
        self._ticker: asyncio.Task[None] | None = None
        self._watch: asyncio.Handle | None = None
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def period_ms(self) -> int:
        """What this end's heartbeats announce (``period_ms``)."""
        return round(self._period_s * 1000)

    @property
    def timeout_s(self) -> float:
        """The loss bound, wall seconds."""
        return self._timeout_s

    @property
    def ticker(self) -> asyncio.Task[None] | None:
        return self._ticker

    def start(self, name: str) -> None:
        """Start sending and watching (on the running loop)."""
        loop = self._loop = asyncio.get_running_loop()
        self._ticker = loop.create_task(self._tick(), name=name)
        self._due = loop.time()
        self._watch = loop.call_soon(self._check)

    def stop_watching(self) -> None:
        """Cancel the watchdog timer (the ticker task is the caller's to cancel and await)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._loop = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        period = self._period_s * self._scale
        next_beat = loop.time()
        while True:
            now = loop.time()
            if now >= next_beat:
                if self._may_send():
                    await self._send(now)
                next_beat = max(next_beat + period, now)
                self._on_period(now)
            await asyncio.sleep(max(0.0, next_beat - loop.time()))

    def _check(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        stalled = now - self._due > STALL_S * self._scale
        if self._watching():
            deadline = self.last_rx + self._timeout_s * self._scale
            if now < deadline:
                self._arm(loop, deadline)
                return
            if stalled:
                self._arm(loop, now + SETTLE_S * self._scale)
                return
            self._on_lost()
        self._arm(loop, now + self._period_s * self._scale)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._due = when
        self._watch = loop.call_at(when, self._check)
