"""A :class:`Link` over a raw file descriptor (a pty master, a pipe, a socket): ``FdLink``.

The leanest link there is: the loop's reader callback does one ``os.read`` per readiness and
hands the bytes over; ``write`` is one ``os.write`` unless the kernel buffer is full (then the
rest is queued and flushed by a writer callback, as an asyncio transport does). Used for
the device side of a pty (the simulator holds the master, the driver opens the slave path) and
by the round-trip benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from drivers.links import Link, LinkDown

log = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024
_MAX_BUFFERED = 4 * 1024 * 1024  # stop reading (back-pressure) above this
_HIGH_WATER = 1024 * 1024  # write() waits while more than this is queued


class FdLink(Link):
    """``fd`` must stay valid while the link is open; closed by ``close()`` if ``owns_fd``."""

    def __init__(self, fd: int, url: str | None = None, *, owns_fd: bool = False) -> None:
        super().__init__(url or f"fd://{fd}")
        self.fd = fd
        self._owns_fd = owns_fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._down: str | None = None
        self._reading = False
        self._wbuf: list[bytes] = []
        self._wsize = 0
        self._drain: asyncio.Future[None] | None = None
        self._receiver: Callable[[bytes], bool] | None = None

    def set_fast_receiver(self, receiver: Callable[[bytes], bool] | None) -> None:
        """Offer freshly read bytes to ``receiver`` first (as ``SerialLink`` does): called in
        the reader callback when nothing waits for ``read``; True means it consumed them."""
        self._receiver = receiver

    @property
    def is_open(self) -> bool:
        return self._loop is not None and self._down is None

    async def open(self) -> None:
        """Start reading; after a failure (pty peer closed: EIO) this tries again."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            os.set_blocking(self.fd, False)
        self._down = None
        self._resume()

    def _resume(self) -> None:
        if not self._reading and self._loop is not None and self._down is None:
            self._loop.add_reader(self.fd, self._on_readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._reading = False

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the other side of the pty is closed
            self._fail(f"read failed: {exc.strerror or exc}")
            return
        if not data:
            self._fail("EOF: peer closed")
            return
        receiver = self._receiver
        if receiver is not None and not self._chunks:
            try:
                if receiver(data):
                    return
            except Exception:  # a receiver bug must not lose the bytes
                log.exception("fd link fast receiver failed")
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _MAX_BUFFERED:
            self._pause()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, detail: str) -> None:
        if self._down is None:
            self._down = detail
        self._pause()
        if self._wbuf and self._loop is not None:
            self._loop.remove_writer(self.fd)
        self._wbuf.clear()
        self._wsize = 0
        self._wake_drain()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def read(self) -> bytes:
        chunks = self._chunks
        if len(chunks) == 1 and self._reading:
            self._size = 0
            return chunks.pop()
        while not chunks:
            if self._down is not None or self._loop is None:
                raise LinkDown(self.url, self._down or "not open")
            self._waiter = w = self._loop.create_future()
            try:
                await w
            finally:
                self._waiter = None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if not self._reading:
            self._resume()
        return data

    async def write(self, data: bytes) -> None:
        """Write now if the kernel takes it; otherwise queue (in order) and return, like an
        asyncio transport. Waits only while more than ``_HIGH_WATER`` bytes are queued."""
        if self._down is not None or self._loop is None:
            raise LinkDown(self.url, self._down or "not open")
        if not self._wbuf:
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fail(f"write failed: {exc.strerror or exc}")
                raise LinkDown(self.url, self._down or "write failed") from exc
            if n == len(data):
                return
            data = data[n:]
            self._loop.add_writer(self.fd, self._on_writable)
        self._wbuf.append(data)
        self._wsize += len(data)
        while self._wsize > _HIGH_WATER and self._down is None:
            self._drain = w = self._loop.create_future()
            await w
        if self._down is not None:
            raise LinkDown(self.url, self._down)

    def _on_writable(self) -> None:
        buf = self._wbuf
        while buf:
            try:
                n = os.write(self.fd, buf[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(f"write failed: {exc.strerror or exc}")
                return
            self._wsize -= n
            if n < len(buf[0]):
                buf[0] = buf[0][n:]
                return
            buf.pop(0)
            if self._wsize <= _HIGH_WATER // 2:
                self._wake_drain()
        if self._loop is not None:
            self._loop.remove_writer(self.fd)
        self._wake_drain()

    def _wake_drain(self) -> None:
        w, self._drain = self._drain, None
        if w is not None and not w.done():
            w.set_result(None)

    async def close(self) -> None:
        if self._loop is None:
            return
        self._fail("closed")
        self._loop = None
        self._chunks.clear()
        if self._owns_fd:
            with contextlib.suppress(OSError):
                os.close(self.fd)
