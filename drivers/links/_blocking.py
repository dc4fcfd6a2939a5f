"""Blocking transports (pyusb, pyserial without a file descriptor) driven from the event loop.

Each link gets a reader thread and a writer thread. The reader polls with a short timeout and
keeps up to ``read_ahead`` transfers waiting (like the several URBs a USB driver keeps queued),
so the next transfer is already in flight while the event loop decodes the last one; it stops
polling when they are not being taken. Writes run one at a time in the writer thread, in the
order they were made, so a write never waits behind a read poll and is never interleaved with
another. Bytes already read are never lost to a cancelled ``read()``: they stay queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ._base import LinkDown

T = TypeVar("T")
READ_AHEAD = 2


class BlockingIO:
    """Runs ``poll`` (returns bytes, or None for "nothing yet") and writes in private threads.

    ``poll`` raises :class:`LinkDown` when the transport is gone; every later ``read`` raises it.
    """

    def __init__(
        self, url: str, name: str, poll: Callable[[], bytes | None], read_ahead: int = READ_AHEAD
    ) -> None:
        self._url = url
        self._poll = poll
        self._read_ahead = read_ahead
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._items: deque[bytes | LinkDown] = deque()
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._reader = threading.Thread(target=self._run, name=f"{name}-read", daemon=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-write")
        self._reader.start()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while True:
            with self._cond:
                while len(self._items) >= self._read_ahead and not self._stop.is_set():
                    self._cond.wait()
            if self._stop.is_set():
                return
            try:
                data = self._poll()
            except LinkDown as exc:
                self._push(exc)
                return
            except Exception as exc:  # a transport bug must still end the link, not hang it
                self._push(LinkDown(self._url, f"read failed: {type(exc).__name__}: {exc}"))
                return
            if data and not self._stop.is_set():
                self._push(data)

    def _push(self, item: bytes | LinkDown) -> None:
        with self._cond:
            self._items.append(item)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is reading
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def read(self) -> bytes:
        while True:
            if self._stop.is_set():
                raise LinkDown(self._url, "closed")
            with self._cond:
                if self._items:
                    item = self._items[0]
                    if isinstance(item, LinkDown):
                        raise LinkDown(item.url, item.detail)  # stays queued: down for good
                    self._items.popleft()
                    self._cond.notify()
                    return item
                self._wakeup.clear()
            await self._wakeup.wait()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the write thread (in submission order)."""
        if self._stop.is_set():
            raise LinkDown(self._url, "closed")
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def stop(self, grace_s: float) -> None:
        """Stop polling; waits up to ``grace_s`` for the poll in flight (one poll timeout)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._wakeup.set()  # a read() waiting right now sees "closed"
        await asyncio.to_thread(self._reader.join, grace_s)
        self._writer.shutdown(wait=False, cancel_futures=True)
