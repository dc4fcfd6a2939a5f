"""An in-process cable for tests and in-process simulation: ``MemoryCable``.

It behaves like a pty or TCP server on the device side: ``cable.device_link`` is one permanent
link (the device's port), while ``cable.host_link()`` makes a new host-side link each time it is
called (a driver reopening the port). Opening a host link replaces the previous host session, as
a TCP server with one peer at a time would. Faults a real cable has are switches on the cable:
``cut()`` (port closed: both ends see :class:`LinkDown`), ``blackhole`` (wire cut silently:
bytes vanish, nobody is told), ``corrupt_next`` and ``drop_next`` (line noise per direction),
``refuse_open`` (device unplugged: opening fails).

Each write is delivered whole, as one chunk, so a fault hits exactly one frame.
"""

from __future__ import annotations

import asyncio

from ._base import Link, LinkDown, LinkError

_MARKERS = frozenset((0x7D, 0x7E, 0x7F))


class _Pipe:
    """One direction of one session: a byte buffer and the reader waiting on it."""

    __slots__ = ("buf", "closed", "waiter")

    def __init__(self) -> None:
        self.buf: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def push(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf.append(data)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def close(self) -> None:
        self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def pull(self, url: str, detail: str) -> bytes:
        while not self.buf:
            if self.closed:
                raise LinkDown(url, detail)
            self.waiter = w = asyncio.get_running_loop().create_future()
            try:
                await w
            finally:
                self.waiter = None
        buf = self.buf
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        return data


class _Session:
    __slots__ = ("down", "up")

    def __init__(self) -> None:
        self.down = _Pipe()  # host -> device
        self.up = _Pipe()  # device -> host

    @property
    def closed(self) -> bool:
        return self.down.closed

    def close(self) -> None:
        self.down.close()
        self.up.close()


class _Direction:
    """Fault switches for one direction of the cable."""

    __slots__ = ("corrupt", "drop", "frames")

    def __init__(self) -> None:
        self.corrupt = 0
        self.drop = 0
        self.frames = 0  # writes delivered (after faults)

    def apply(self, data: bytes) -> bytes | None:
        if self.drop > 0:
            self.drop -= 1
            return None
        if self.corrupt > 0:
            self.corrupt -= 1
            data = flip_one_bit(data)
        self.frames += 1
        return data


def flip_one_bit(data: bytes) -> bytes:
    """``data`` with one bit flipped in the middle, never creating or destroying a marker byte,
    so the frame keeps its boundaries and only its CRC catches the damage."""
    out = bytearray(data)
    n = len(out)
    for i in [*range(n // 2, n - 1), *range(1, n // 2)]:
        b = out[i]
        if b not in _MARKERS and (b ^ 0x01) not in _MARKERS:
            out[i] = b ^ 0x01
            return bytes(out)
    return data


class MemoryCable:
    """A device port plus any number of successive host connections, all in one process."""

    def __init__(self, url: str = "memory://cable") -> None:
        self.url = url
        self.device_link = _DeviceEnd(self)
        self.blackhole = False
        self.refuse_open = False
        self.to_device = _Direction()
        self.to_host = _Direction()
        self.host_opens = 0
        self._session: _Session | None = None
        self._changed: asyncio.Future[None] | None = None

    def host_link(self) -> Link:
        """A new unopened host-side link (use as a ``WireClient`` link factory)."""
        return _HostEnd(self)

    @property
    def connected(self) -> bool:
        return self._session is not None and not self._session.closed

    def cut(self) -> None:
        """Close the current host session: both ends' reads and writes raise LinkDown."""
        if self._session is not None:
            self._session.close()
        self._notify()

    def corrupt_next(self, n: int = 1, *, to_device: bool = True) -> None:
        """Flip one bit in each of the next ``n`` writes in that direction."""
        (self.to_device if to_device else self.to_host).corrupt += n

    def drop_next(self, n: int = 1, *, to_device: bool = True) -> None:
        """Lose the next ``n`` writes in that direction silently."""
        (self.to_device if to_device else self.to_host).drop += n

    def _attach(self) -> _Session:
        if self._session is not None:
            self._session.close()
        self._session = _Session()
        self.host_opens += 1
        self._notify()
        return self._session

    def _notify(self) -> None:
        w, self._changed = self._changed, None
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await self._changed

    def _send(self, pipe: _Pipe, direction: _Direction, data: bytes) -> None:
        if self.blackhole:
            return
        out = direction.apply(data)
        if out is not None:
            pipe.push(out)


class _HostEnd(Link):
    def __init__(self, cable: MemoryCable) -> None:
        super().__init__(cable.url)
        self._cable = cable
        self._session: _Session | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None and not self._session.closed

    async def open(self) -> None:
        if self._cable.refuse_open:
            raise LinkError(self.url, "device not connected (refuse_open)")
        self._session = self._cable._attach()

    async def read(self) -> bytes:
        s = self._session
        if s is None:
            raise LinkDown(self.url, "not open")
        return await s.up.pull(self.url, "cable cut")

    async def write(self, data: bytes) -> None:
        s = self._session
        if s is None or s.closed:
            raise LinkDown(self.url, "cable cut" if s else "not open")
        self._cable._send(s.down, self._cable.to_device, bytes(data))

    async def close(self) -> None:
        s, self._session = self._session, None
        if s is not None:
            s.close()
            self._cable._notify()


class _DeviceEnd(Link):
    """The device's port: survives host sessions; each session's end is one LinkDown."""

    def __init__(self, cable: MemoryCable) -> None:
        super().__init__(cable.url + "#device")
        self._cable = cable
        self._open = False
        self._dead: _Session | None = None  # the session whose end was already reported

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        self._open = True

    async def read(self) -> bytes:
        while True:
            if not self._open:
                raise LinkDown(self.url, "not open")
            s = self._cable._session
            if s is not None and s is not self._dead:
                try:
                    return await s.down.pull(self.url, "host closed the port")
                except LinkDown:
                    self._dead = s
                    raise
            await self._cable._wait_change()

    async def write(self, data: bytes) -> None:
        s = self._cable._session
        if not self._open or s is None or s.closed:
            raise LinkDown(self.url, "no host connected")
        self._cable._send(s.up, self._cable.to_host, bytes(data))

    async def close(self) -> None:
        self._open = False
        self._cable._notify()
