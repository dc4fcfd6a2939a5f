"""Direct, non-blocking I/O on a file descriptor from the event loop: the round-trip hot path.

Shared by the serial link (a tty or pty opened by pyserial) and the simulator's ``FdLink`` (the
device side of a pty). Reads: the loop's reader callback does one ``os.read`` per readiness and
queues the bytes for :meth:`FdIO.read`, or hands them to a fast receiver first. Writes go out at
once while the kernel takes them; the rest is queued, in order, and flushed by a writer callback,
as an asyncio transport does. A failure (EIO from a pty whose peer closed, EOF, a failed write)
stops all I/O, wakes the reader and writer, and is worded once by the owner's ``on_fail``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from collections.abc import Callable

from ._base import LinkDown

READ_SIZE = 256 * 1024  # one os.read per readiness
MAX_BUFFERED = 4 * 1024 * 1024  # reading pauses (back-pressure) above this

log = logging.getLogger(__name__)

Receiver = Callable[[bytes], bool]
# (operation, error or None for EOF) -> what happened, in the owner's words
FailHook = Callable[[str, OSError | None], str]


class FdIO:
    """Reads and writes ``fd`` (set non-blocking here) on ``loop``; never closes it."""

    def __init__(
        self,
        fd: int,
        url: str,
        loop: asyncio.AbstractEventLoop,
        on_fail: FailHook,
        *,
        high_water: int,
    ) -> None:
        self.fd = fd
        self.url = url
        self.loop = loop
        self._on_fail = on_fail
        self.high_water = high_water  # write() waits while more than this is queued
        self.chunks: list[bytes] = []
        self.size = 0
        self.waiter: asyncio.Future[None] | None = None
        self.receiver: Receiver | None = None
        self.reading = False
        self.wbuf: list[bytes] = []
        self.wsize = 0
        self.drain: asyncio.Future[None] | None = None
        self.failed = False
        self.down: str | None = None  # why I/O stopped
        self._poller: select.poll | None = None
        os.set_blocking(fd, False)
        self.resume()

    # --- reading ------------------------------------------------------------------------------

    def resume(self) -> None:
        if not self.reading and not self.failed:
            self.loop.add_reader(self.fd, self._on_readable)
            self.reading = True

    def _pause(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the other end of the pty is closed
            self.fail("read", exc)
            return
        if not data:
            self.fail("read", None)
            return
        receiver = self.receiver
        if receiver is not None and not self.chunks:
            try:
                if receiver(data):
                    return
            except Exception:  # a receiver bug must not lose the bytes
                log.exception("%s: fast receiver failed", self.url)
        self.chunks.append(data)
        self.size += len(data)
        if self.size > MAX_BUFFERED:
            self._pause()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take(self) -> bytes:
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.size = 0
        if not self.reading:
            self.resume()
        return data

    async def read(self) -> bytes:
        while not self.chunks:
            if self.failed:
                raise LinkDown(self.url, self.down or "closed")
            self.waiter = w = self.loop.create_future()
            try:
                await w
            finally:
                self.waiter = None
        return self.take()

    def wait(self, done: Callable[[], bool], budget_ms: int) -> None:
        """Block in ``poll(2)`` for at most ``budget_ms`` until ``done()``, handling each
        readiness exactly as the loop's reader callback would (same read, same delivery).

        Only while the loop would read too: not while reading is paused for back-pressure,
        and not while bytes wait for ``read`` (those are the reader task's to handle first).
        """
        if self.failed or not self.reading or self.chunks:
            return
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self.fd, select.POLLIN)
        deadline = time.monotonic() + budget_ms * 1e-3
        while True:
            left_ms = (deadline - time.monotonic()) * 1e3
            if left_ms <= 0 or not poller.poll(left_ms):
                return
            self._on_readable()
            if done() or self.failed or not self.reading or self.chunks:
                return

    # --- writing ------------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Write now if the kernel takes it all (the hot path: one ``os.write``); otherwise
        queue the rest and wait only while more than ``high_water`` bytes are queued."""
        if self.failed:
            raise LinkDown(self.url, self.down or "closed")
        if not data:
            return
        if not self.wbuf:
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self.fail("write", exc)
                raise LinkDown(self.url, self.down or "write failed") from exc
            if n == len(data):
                return
            data = data[n:]
            self.loop.add_writer(self.fd, self._on_writable)
        self.wbuf.append(data)
        self.wsize += len(data)
        while self.wsize > self.high_water and not self.failed:
            self.drain = w = self.loop.create_future()
            await w
        if self.failed:
            raise LinkDown(self.url, self.down or "closed")

    def _on_writable(self) -> None:
        buf = self.wbuf
        while buf:
            try:
                n = os.write(self.fd, buf[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.fail("write", exc)
                return
            self.wsize -= n
            if n < len(buf[0]):
                buf[0] = buf[0][n:]
                break
            buf.pop(0)
        if not buf:
            self.loop.remove_writer(self.fd)
        if self.wsize <= self.high_water // 2:
            w, self.drain = self.drain, None
            if w is not None and not w.done():
                w.set_result(None)

    # --- ending -------------------------------------------------------------------------------

    def fail(self, op: str, exc: OSError | None) -> None:
        """Stop all I/O after ``op`` failed (``exc`` None: EOF); wakes the reader and writer."""
        if self.failed:
            return
        self.down = self._on_fail(op, exc)
        self._stop()

    def close(self) -> None:
        """Stop I/O; a pending ``read``/``write`` ends with :class:`LinkDown`. Never raises."""
        if not self.failed:
            self.down = "closed"
            self._stop()

    def _stop(self) -> None:
        self.failed = True
        self._pause()
        if self.wbuf:
            self.loop.remove_writer(self.fd)
        self.wbuf.clear()
        self.wsize = 0
        for w in (self.waiter, self.drain):
            if w is not None and not w.done():
                w.set_result(None)
        self.drain = None
