"""The one place that puts a time bound on device awaitables."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from .errors import DeviceTimeout

T = TypeVar("T")


async def bounded(device: str, operation: str, timeout_s: float, aw: Awaitable[T]) -> T:
    """Await ``aw`` for at most ``timeout_s`` (loop time), raising :class:`DeviceTimeout`.

    Loop time is virtual under the simulator's clock, so a bound derived from physics
    (distance / speed) means the same thing in a rehearsal as in the room.
    """
    if timeout_s <= 0:
        raise ValueError(f"{device}: {operation}: timeout must be positive, got {timeout_s}")
    try:
        async with asyncio.timeout(timeout_s):
            return await aw
    except TimeoutError as exc:
        raise DeviceTimeout(device, operation, timeout_s) from exc


class Bounded:
    """Mixed into the device contracts: every public await is bounded through here.

    ``latency_allowance_s`` is added to every bound. It is 0 for devices in this process on
    virtual time; a driver on a real link sets it to the link's share of an operation (replies,
    image transfer), and a simulator serving real links to its computing time, both in *loop*
    seconds, i.e. wall seconds × the clock's time scale: neither a cable nor a CPU gets faster
    when a rehearsal runs the patient's time 60× faster.
    """

    name: str
    latency_allowance_s: float = 0.0

    async def _bounded(self, operation: str, timeout_s: float, aw: Awaitable[T]) -> T:
        return await bounded(self.name, operation, timeout_s + self.latency_allowance_s, aw)
