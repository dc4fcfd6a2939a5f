"""The host's requests waiting for their replies, and the errors a missing or bad reply makes.

``call`` creates no task per request: the reader resolves a future kept in a ``seq → future``
dict. Reply timeouts share one ``loop.call_at`` timer, armed for the earliest deadline and
re-armed when it fires (sequential calls push the deadline later, so the timer is made about
once per timeout instead of once per call).
"""

from __future__ import annotations

import asyncio
import random
from enum import Enum
from typing import Final

from ..errors import (
    LIMIT_FAULT,
    AmbiguousCommand,
    CommandRejected,
    DeviceBusy,
    DeviceError,
    DeviceFault,
    DeviceLimitExceeded,
    DeviceLost,
    DeviceStateError,
    DeviceTimeout,
)
from .codec import Fields, Reply, Status

_NEVER: Final = float("inf")


class Miss(Enum):
    """Why a call's wait ended without a reply."""

    TIMEOUT = "timeout"
    NAK = "nak"
    LINK_LOST = "link_lost"
    CLOSED = "closed"


Outcome = tuple[Status, Fields, float] | Miss
"""``(status, fields, arrival)`` of the reply, or why there is none."""


class PendingCalls:
    """Requests in flight: their futures by ``seq``, their attempts' deadlines, which of them
    are fire-once, and the one timer that ends attempts whose deadline has passed."""

    def __init__(self) -> None:
        #: read by the reader's hot path directly (no method call per reply)
        self.futures: dict[int, asyncio.Future[Outcome]] = {}
        self.fire_once: set[int] = set()
        self._deadlines: dict[int, float] = {}  # seq -> loop time its current attempt ends
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _NEVER
        self._stopped = False
        # A random first seq, so a restarted host does not hit the device's reply cache with
        # the seqs of its previous life.
        self._seq = random.randrange(0x10000)

    def next_seq(self, *, unused: bool = True) -> int:
        """The next request seq; with ``unused``, the next not waiting for a reply."""
        seq = self._seq
        while True:
            seq = (seq + 1) & 0xFFFF
            if not unused or seq not in self.futures:
                break
        self._seq = seq
        return seq

    def attempt(
        self, loop: asyncio.AbstractEventLoop, seq: int, deadline: float
    ) -> asyncio.Future[Outcome]:
        """A fresh future for an attempt of ``seq`` that ends (TIMEOUT) at loop time
        ``deadline``."""
        fut: asyncio.Future[Outcome] = loop.create_future()
        self.futures[seq] = fut
        self._deadlines[seq] = deadline
        if deadline < self._timer_at:
            self._arm(loop, deadline)
        return fut

    def end(self, seq: int) -> None:
        """``seq`` is answered or given up on."""
        del self.futures[seq]
        del self._deadlines[seq]
        self.fire_once.discard(seq)

    def fail_all(self, why: Miss) -> None:
        for fut in self.futures.values():
            if not fut.done():
                fut.set_result(why)

    def nak(self, seq: int | None) -> None:
        """The device NAKed request ``seq``, or (None) "a frame was lost, I don't know which":
        re-send the idempotent requests now (a copy the device did get is answered from its
        reply cache); fire-once requests wait for their reply or their timeout."""
        if seq is not None:
            fut = self.futures.get(seq)
            if fut is not None and not fut.done():
                fut.set_result(Miss.NAK)
            return
        for s, fut in self.futures.items():
            if s not in self.fire_once and not fut.done():
                fut.set_result(Miss.NAK)

    def stop(self) -> None:
        """The client closed: the timer ends nothing more."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, _NEVER

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer, loop)
        self._timer_at = when

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        """End the attempts that are due, re-arm for the next one."""
        self._timer, self._timer_at = None, _NEVER
        if self._stopped:
            return
        now = loop.time()
        following = _NEVER
        for seq, deadline in self._deadlines.items():
            if deadline <= now:
                fut = self.futures.get(seq)
                if fut is not None and not fut.done():
                    fut.set_result(Miss.TIMEOUT)
            elif deadline < following:
                following = deadline
        if following < _NEVER:
            self._arm(loop, following)


def no_reply_error(
    device: str,
    command: str,
    seq: int,
    why: Miss,
    *,
    fire_once: bool,
    waited_s: float,
    attempts: int,
    down_detail: str,
    link: str,
) -> DeviceError:
    """What a call that got no reply raises."""
    if why is Miss.CLOSED and not fire_once:
        return DeviceLost(device, command, "client closed", link=link)
    if fire_once:
        detail = f"request seq {seq} sent once and not re-sent (fire-once)"
        if why is Miss.LINK_LOST:
            detail += f"; {down_detail}"
        return AmbiguousCommand(
            device, command, waited_s, cause=why.value, detail=detail, link=link
        )
    if why is Miss.LINK_LOST:
        return DeviceLost(device, command, down_detail, link=link)
    detail = f"no reply to seq {seq} in {attempts} attempts (last: {why.value})"
    return DeviceTimeout(device, command, waited_s, detail=detail, link=link)


def reply_error(device: str, command: str, reply: Reply, link: str) -> DeviceError:
    """What a call answered with an error status raises."""
    f = reply.fields
    message = str(f.get("message") or "")
    status = reply.status
    if status is Status.BAD_STATE:
        return DeviceStateError(device, command, message or "not allowed now", link=link)
    if status is Status.FAULT:
        return DeviceFault(device, command, str(f.get("fault") or "unknown"), message, link=link)
    if status is Status.INTERLOCK:
        fault = str(f.get("fault") or "interlock")
        if fault == LIMIT_FAULT:
            return DeviceLimitExceeded.from_fields(device, command, f, message, link=link)
        return DeviceFault(device, command, fault, message, link=link)
    if status is Status.BUSY:
        return DeviceBusy(device, command, message or "busy, try again later", link=link)
    return CommandRejected(device, command, status.name, message or status.name, link=link)
