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
