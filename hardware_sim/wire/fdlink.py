"""A :class:`Link` over a raw file descriptor (a pty master, a pipe, a socket): ``FdLink``.

The leanest link there is: :class:`drivers.links.FdIO` (the serial link's direct I/O) without
a port around it. Used for the device side of a pty (the simulator holds the master, the
driver opens the slave path) and by the round-trip benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from drivers.links import FdIO, Link, LinkDown

_HIGH_WATER = 1024 * 1024  # write() waits while more than this is queued


class FdLink(Link):
    """``fd`` must stay valid while the link is open; closed by ``close()`` if ``owns_fd``."""

    def __init__(self, fd: int, url: str | None = None, *, owns_fd: bool = False) -> None:
        super().__init__(url or f"fd://{fd}")
        self.fd = fd
        self._owns_fd = owns_fd
        self._io: FdIO | None = None
        self._closed = False
        self._receiver: Callable[[bytes], bool] | None = None

    def set_fast_receiver(self, receiver: Callable[[bytes], bool] | None) -> None:
        """Offer freshly read bytes to ``receiver`` first (as ``SerialLink`` does): called in
        the reader callback when nothing waits for ``read``; True means it consumed them."""
        self._receiver = receiver
        if self._io is not None:
            self._io.receiver = receiver

    @property
    def is_open(self) -> bool:
        return self._io is not None and not self._io.failed

    async def open(self) -> None:
        """Start reading; after a failure (pty peer closed: EIO) this tries again."""
        if self._closed:
            raise LinkDown(self.url, "closed")
        if self._io is not None and not self._io.failed:
            return
        loop = asyncio.get_running_loop()
        self._io = FdIO(self.fd, self.url, loop, _describe, high_water=_HIGH_WATER)
        self._io.receiver = self._receiver

    async def read(self) -> bytes:
        io = self._io
        if io is None:
            raise LinkDown(self.url, "not open")
        return io.take() if io.chunks else await io.read()

    async def write(self, data: bytes) -> None:
        io = self._io
        if io is None:
            raise LinkDown(self.url, "not open")
        await io.write(data)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._io is not None:
            self._io.close()
            self._io.chunks.clear()
        if self._owns_fd:
            with contextlib.suppress(OSError):
                os.close(self.fd)


def _describe(op: str, exc: OSError | None) -> str:
    return "EOF: peer closed" if exc is None else f"{op} failed: {exc.strerror or exc}"
