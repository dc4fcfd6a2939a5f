"""The host's side of BULK transfers (§2.6): reassembly, waiting, and asking for lost chunks.

``WireClient`` hands every received chunk to :meth:`BulkReceiver.on_chunk` and lets it expire
idle transfers once per heartbeat period; :meth:`BulkReceiver.fetch` is ``WireClient.bulk``.
Lost chunks are asked for again with the idempotent ``link.bulk_resend`` through the client's
``call``, so they travel in the client's session like any request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from ..errors import DeviceError, DeviceLost, DeviceTimeout
from .bulk import BulkAssembler, BulkComplete, BulkError, BulkProblem
from .codec import (
    BulkChunk,
    Frame,
    Scalar,
)

log = logging.getLogger(__name__)

BULK_IDLE_S: Final = 0.25  # no chunk for this long with chunks missing: ask for them again
BULK_KEEP: Final = 16  # finished transfers kept for a bulk() call that comes after the data
BULK_TIMEOUT_S: Final = 2.0  # §2.6: an idle transfer is dropped after 2 s
MAX_RESEND_RUNS: Final = 32  # link.bulk_resend requests per round

Call = Callable[[str, Mapping[str, Scalar]], Awaitable[object]]


class BulkReceiver:
    def __init__(
        self,
        name: str,
        device_id: int,
        scale: float,
        idle_s: float,
        call: Call,
        on_resend: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.link_url = ""
        self._on_resend = on_resend
        self._device = device_id
        self._scale = scale
        self._idle_s = idle_s
        self._call = call
        self._assembler = BulkAssembler(timeout_s=BULK_TIMEOUT_S * scale)
        self._waiters: dict[int, asyncio.Future[bytes]] = {}
        self._done: OrderedDict[int, BulkComplete | BulkError] = OrderedDict()
        self._seen: dict[int, float] = {}

    async def fetch(
        self, transfer_id: int, timeout_s: float, loop: asyncio.AbstractEventLoop
    ) -> bytes:
        tid = transfer_id
        done = self._done.pop(tid, None)
        if done is not None:
            return self._result(done)
        if tid in self._waiters:
            raise ValueError(f"{self.name}: already waiting for bulk transfer {tid}")
        fut: asyncio.Future[bytes] = loop.create_future()
        self._waiters[tid] = fut
        start = loop.time()
        deadline = start + timeout_s * self._scale
        idle = self._idle_s * self._scale
        asked = start
        try:
            while True:
                activity = max(self._seen.get(tid, start), asked)
                wake = min(deadline, activity + idle)
                now = loop.time()
                if wake > now:
                    await asyncio.wait((fut,), timeout=wake - now)
                if fut.done():
                    return fut.result()
                now = loop.time()
                if now >= deadline:
                    missing = self._assembler.missing(self._device, tid)
                    detail = (
                        "no chunk received"
                        if missing is None
                        else f"{len(missing)} chunks missing (first {missing[:8]})"
                    )
                    raise DeviceTimeout(
                        self.name, f"bulk {tid}", timeout_s, detail=detail, link=self.link_url
                    )
                if now - max(self._seen.get(tid, start), asked) >= idle:
                    asked = now
                    await self._ask_resend(tid)
        finally:
            if self._waiters.get(tid) is fut:
                del self._waiters[tid]

    async def _ask_resend(self, tid: int) -> None:
        missing = self._assembler.missing(self._device, tid)
        # Nothing received (or the transfer expired): ask for everything from chunk 0.
        runs = [(0, 0xFFFFFFFF)] if missing is None else _runs(missing)[:MAX_RESEND_RUNS]
        for first, count in runs:
            self._on_resend()
            try:
                await self._call(
                    "link.bulk_resend", {"transfer_id": tid, "first": first, "count": count}
                )
            except DeviceLost:
                raise
            except DeviceError as exc:
                # Not sent yet, or already forgotten: keep waiting until the deadline.
                log.debug("%s: bulk_resend %d refused: %s", self.name, tid, exc)

    def _result(self, result: BulkComplete | BulkError) -> bytes:
        if isinstance(result, BulkComplete):
            return result.data
        raise DeviceError(
            self.name,
            f"bulk {result.transfer_id}",
            f"{result.problem.name}: {result.detail}",
            link=self.link_url,
        )

    def on_chunk(self, frame: Frame, chunk: BulkChunk, now: float) -> None:
        tid = chunk.transfer_id
        self._seen[tid] = now
        result = self._assembler.add(frame, now)
        if result is None:
            return
        if isinstance(result, BulkError) and result.problem is BulkProblem.INCONSISTENT:
            # One bad chunk was dropped; the transfer goes on (or never started).
            log.warning("%s: bulk %d: %s", self.name, tid, result.detail)
            return
        self._seen.pop(tid, None)
        fut = self._waiters.pop(tid, None)
        if fut is None:
            self._done[tid] = result
            self._done.move_to_end(tid)
            while len(self._done) > BULK_KEEP:
                self._done.popitem(last=False)
        elif not fut.done():
            try:
                fut.set_result(self._result(result))
            except DeviceError as exc:
                fut.set_exception(exc)

    def fail_waiting(self, detail: str) -> None:
        """The link is lost: every waiting fetch gets :class:`DeviceLost`."""
        waiters, self._waiters = self._waiters, {}
        for tid, fut in waiters.items():
            if not fut.done():
                fut.set_exception(DeviceLost(self.name, f"bulk {tid}", detail, link=self.link_url))

    def expire(self, now: float) -> None:
        self._assembler.expire(now)  # a waiter asks for the whole transfer again
        horizon = now - BULK_TIMEOUT_S * self._scale
        for tid in [t for t, at in self._seen.items() if at < horizon]:
            if tid not in self._waiters:
                del self._seen[tid]


def _runs(indices: tuple[int, ...]) -> list[tuple[int, int]]:
    """Sorted indices as ``(first, count)`` runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs
