"""Device side of a serial link: a pseudo-terminal published at a stable symlink path.

The host opens ``serial://<symlink>`` as if it were a USB-serial adapter. The server keeps its
own descriptor of the slave side open, so the host closing and reopening the port does not
hang up the master (no EIO here, no lost device state). :meth:`PtyServer.restart` is the
"pty closed" fault: the pair is replaced (the host's open port sees EOF/EIO, like an adapter
unplugged) and the symlink is repointed atomically at the new slave, where the host reopens.

Writes never block the device for long: when nobody drains the port (host not reading, or not
connected) for ``stall_s``, the unread input of the slave is discarded, like a UART without
flow control overrunning. Bytes still in the slave when the host opens the port are stale;
the host link discards them on open. The slave device is mode 0600: only the user running the
simulator (and root) can open it; the wire protocol's session layer guards the rest.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import termios
import tty
from pathlib import Path

from drivers.links import Link, LinkDown

READ_SIZE = 64 * 1024
QUEUE_CHUNKS = 256  # reads buffered for the device before the master stops being read
STALL_S = 0.2


class PtyServer(Link):
    def __init__(self, symlink: str | os.PathLike[str], *, stall_s: float = STALL_S) -> None:
        self.path = Path(symlink).absolute()
        super().__init__(f"pty://{self.path}")
        self._stall_s = stall_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._master = -1
        self._slave = -1
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_CHUNKS)
        self._paused = False
        self._write_lock = asyncio.Lock()
        self._closed = True
        self.restarts = 0
        self.bytes_discarded = 0

    @property
    def host_url(self) -> str:
        """The URL the host opens (``serial://`` + the symlink path)."""
        return f"serial://{self.path}"

    @property
    def device_path(self) -> str:
        """The current slave device (``/dev/pts/N``); changes on :meth:`restart`."""
        return os.ttyname(self._slave)

    @property
    def is_open(self) -> bool:
        return not self._closed

    async def open(self) -> None:
        if not self._closed:
            return
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._incoming = asyncio.Queue(QUEUE_CHUNKS)  # a reopen starts clean, past the "closed"
        self._new_pair()

    def _new_pair(self) -> None:
        master, slave = os.openpty()
        # Only this user may open the port (devpts makes it 0620, writable by group tty): a
        # device port is a control channel, not a terminal others may write messages to.
        os.fchmod(slave, 0o600)
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged both ways
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)  # atomic: the path always names a live pty or the old one
        assert self._loop is not None
        # A full queue stays paused on the new pair too; read() resumes it.
        self._paused = self._incoming.full()
        if not self._paused:
            self._loop.add_reader(master, self._on_readable)

    def _drop_pair(self) -> None:
        if self._master >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
            os.close(self._master)
        if self._slave >= 0:
            os.close(self._slave)
        self._master = self._slave = -1

    def restart(self) -> None:
        """Close the pty pair and publish a new one at the same path (the "pty closed" fault)."""
        if self._closed:
            raise LinkDown(self.url, "closed")
        self._drop_pair()
        self._new_pair()
        self.restarts += 1

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            # EIO cannot happen while we hold the slave; anything else: stop reading this pair.
            assert self._loop is not None
            self._loop.remove_reader(self._master)
            return
        if data:
            self._incoming.put_nowait(data)
            if self._incoming.full():
                # The device is not keeping up: stop reading, the pty fills, the host waits.
                assert self._loop is not None
                self._loop.remove_reader(self._master)
                self._paused = True

    async def read(self) -> bytes:
        if self._closed:
            raise LinkDown(self.url, "closed")
        data = await self._incoming.get()
        if data is None:
            self._incoming.put_nowait(None)
            raise LinkDown(self.url, "closed")
        if self._paused and not self._closed:
            assert self._loop is not None
            self._paused = False
            self._loop.add_reader(self._master, self._on_readable)
        return data

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise LinkDown(self.url, "closed")
        view = memoryview(data)
        async with self._write_lock:
            while view and not self._closed:
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    if not await self._wait_writable():
                        self._overrun()
                    continue
                view = view[n:]

    async def _wait_writable(self) -> bool:
        assert self._loop is not None
        master = self._master
        ready = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(master, wake)
        try:
            async with asyncio.timeout(self._stall_s):
                await ready
            return True
        except TimeoutError:
            return False
        finally:
            if master == self._master:  # not swapped by restart() meanwhile
                self._loop.remove_writer(master)

    def _overrun(self) -> None:
        """Nobody drained the port for ``stall_s``: discard what the host has not read."""
        with contextlib.suppress(OSError):
            pending = array.array("i", [0])
            fcntl.ioctl(self._slave, termios.FIONREAD, pending)
            termios.tcflush(self._slave, termios.TCIFLUSH)
            self.bytes_discarded += pending[0]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            # Only our own link: another server may have taken the path over since.
            if os.readlink(self.path) == os.ttyname(self._slave):
                self.path.unlink()
        self._drop_pair()
        while not self._incoming.empty():
            self._incoming.get_nowait()
        self._incoming.put_nowait(None)
