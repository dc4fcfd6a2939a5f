"""Serial links: ``serial:///dev/PATH?baudrate=N`` and ``serial+SCHEME://...`` (pyserial URLs).

Every port is opened and configured (baud rate, raw mode, exclusive access) by pyserial. A
plain port with a file descriptor (a tty or pty: pyserial's own ``Serial`` class) is then read
and written directly on the event loop: ``loop.add_reader`` and one ``os.read`` per readiness,
``os.write`` while the kernel takes the bytes (:class:`.FdIO`, shared with the simulator's
``FdLink``). That is the round-trip hot path of the drivers; going through
``Serial.read``/``write`` (a ``select`` per call) and an asyncio transport costs about as much
again as the rest of a command round trip. On a direct port, ``?reply_wait_ms=N`` lets a
command wait for its reply in ``poll(2)`` for up to N ms instead of in the event loop
(:meth:`SerialLink.wait_reply`, decision 0009).
URL handlers that wrap the descriptor (``spy://`` logs every byte) and ``socket://`` run
through pyserial-asyncio-fast; ports without a descriptor (``loop://``, ``rfc2217://``) are
polled in a private thread with a short timeout (:mod:`._blocking`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import io
import logging
import termios
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import serial
import serial_asyncio_fast

from ._base import LinkDown, LinkError
from ._blocking import BlockingIO
from ._fd import FdIO, Receiver
from ._stream import StreamLink
from ._tcp import describe_socket_error
from ._url import SERIAL_FORMS, bad_url, int_option, query, reject_unknown, split

DEFAULT_BAUDRATE = 115_200
POLL_S = 0.05  # read timeout of a thread-polled port: bounds how long close() waits
HIGH_WATER = 64 * 1024  # write() on a direct port waits while more than this is queued
MAX_REPLY_WAIT_MS = 20  # the event loop may be held this long at most per command

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SerialTarget:
    port: str  # what pyserial opens: a device path or a pyserial URL
    baudrate: int
    is_path: bool
    reply_wait_ms: int = 0  # 0: replies are awaited in the event loop only

    @property
    def scheme(self) -> str:
        return "" if self.is_path else self.port.split("://", 1)[0]


def parse_serial_url(url: str) -> SerialTarget:
    parts = split(url, SERIAL_FORMS)
    scheme = parts.scheme
    options = query(url, parts, SERIAL_FORMS)
    baudrate = DEFAULT_BAUDRATE
    if "baudrate" in options:
        baudrate = int_option(url, "baudrate", options.pop("baudrate"), SERIAL_FORMS, 1, 50_000_000)
    wait_ms = 0
    if "reply_wait_ms" in options:
        wait_ms = int_option(
            url, "reply_wait_ms", options.pop("reply_wait_ms"), SERIAL_FORMS, 0, MAX_REPLY_WAIT_MS
        )
    if scheme == "serial":
        if parts.netloc:
            raise bad_url(
                url, f"host part {parts.netloc!r} (a path needs three slashes)", SERIAL_FORMS
            )
        if not parts.path.startswith("/") or parts.path == "/":
            raise bad_url(url, "no device path", SERIAL_FORMS)
        reject_unknown(url, options, {"baudrate", "reply_wait_ms"}, SERIAL_FORMS)
        return SerialTarget(parts.path, baudrate, is_path=True, reply_wait_ms=wait_ms)
    if scheme.startswith("serial+"):
        inner = scheme.removeprefix("serial+")
        if (
            not inner.isidentifier()
            or importlib.util.find_spec(f"serial.urlhandler.protocol_{inner}") is None
        ):
            raise bad_url(url, f"pyserial has no {inner!r} URL handler", SERIAL_FORMS)
        # The rest of the query belongs to pyserial's handler (e.g. ``?logging=debug``).
        rest = urlencode(options)
        # Built by hand: urlunsplit would drop the "//" of an empty host (``loop://``).
        port = f"{inner}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
        if inner in ("socket", "rfc2217") and not parts.netloc:
            raise bad_url(url, f"{inner} needs HOST:PORT", SERIAL_FORMS)
        return SerialTarget(port, baudrate, is_path=False, reply_wait_ms=wait_ms)
    raise bad_url(url, f"scheme {scheme!r} is not serial or serial+SCHEME", SERIAL_FORMS)


def _open_error(target: SerialTarget, exc: BaseException) -> str:
    name = target.port
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return f"no such serial port {name}"
    if code == errno.EACCES:
        return f"permission denied opening serial port {name}"
    if code == errno.EBUSY:
        return f"serial port {name} is busy"
    if isinstance(exc, OSError) and not isinstance(exc, serial.SerialException):
        return describe_socket_error(exc, name)
    return f"cannot open serial port {name}: {exc}"


class _SerialTransport(serial_asyncio_fast.SerialTransport):
    """pyserial-asyncio-fast's transport with its deferred-write bugs worked around.

    In 0.16 (upstream PR #36, unreleased at the time of writing): (1) after a partial write the
    writer callback stays registered once the buffer is drained and fires in a loop, raising
    AssertionError each time; (2) a direct write into a full port makes pyserial retry EAGAIN
    in a tight loop, blocking the event loop (a deadlock when the peer runs on the same loop,
    as the simulator does). Here every write is buffered and written when the port is
    writable, and a drained buffer unregisters the writer. Connection loss is reported once,
    without flushing a failed port. Reads take 64 KiB at a time instead of 1 KiB.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any, port: Any) -> None:
        super().__init__(loop, protocol, port)
        self._max_read_size = 64 * 1024
        self._lost = False

    async def _call_connection_lost(self, exc: Exception | None, *, flush: bool) -> None:
        # Once only (a close after an error would run it twice and crash on the second run),
        # and no flush of a port that failed: there is nobody to flush to.
        if self._lost:
            return
        self._lost = True
        await super()._call_connection_lost(exc, flush=flush and exc is None)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._write_buffer.append(bytes(data))
        self._ensure_writer()
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        if not self._write_buffer:
            self._remove_writer()
            return
        super()._write_ready()


def _has_fileno(port: Any) -> bool:
    try:
        port.fileno()
    except (AttributeError, io.UnsupportedOperation, serial.SerialException):
        return False
    return True


def _is_plain_fd_port(port: Any) -> bool:
    """pyserial's own posix ``Serial`` (a tty or pty), not a handler that wraps its reads."""
    cls = type(port)
    return (
        isinstance(port, serial.Serial)
        and getattr(cls, "read", None) is serial.Serial.read
        and getattr(cls, "write", None) is serial.Serial.write
        and _has_fileno(port)
    )


def _read_at_least_one_byte(fd: int) -> None:
    """VMIN=1, VTIME=0 on a port read directly (pyserial leaves both 0).

    With VMIN=0 a read finding nothing returns b"", which a direct reader cannot tell from
    EOF. A reader callback that finds the bytes gone (taken in ``poll(2)`` by ``wait_reply``
    after the loop's ``epoll`` saw them) would then declare a live port closed. With VMIN=1 a
    non-blocking read finding nothing raises EAGAIN, and b"" means a hang-up, nothing else.
    """
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class SerialLink(StreamLink):
    """A serial port. ``read`` raises :class:`LinkDown` when the port goes away (EIO/EOF).

    Bytes that arrived while the port was closed (stale replies, heartbeats) are discarded on
    ``open`` for ports with a descriptor: the decoder would skip them anyway, but a stale
    event must not look new.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.target = parse_serial_url(url)
        self._port: Any = None  # the pyserial instance of a thread-polled port
        self._io: BlockingIO | None = None
        self._fdp: FdIO | None = None  # I/O on the descriptor of a port read directly
        self._fd_port: Any = None  # that port's pyserial instance
        self._receiver: Receiver | None = None

    @property
    def is_open(self) -> bool:
        if self._fdp is not None:
            return self._down is None
        if self._io is not None:
            return self._down is None and not self._io.stopped
        return super().is_open

    @property
    def direct(self) -> bool:
        """True while the port's descriptor is read and written directly (no transport)."""
        return self._fdp is not None

    def set_fast_receiver(self, receiver: Receiver | None) -> None:
        """Offer freshly read bytes to ``receiver`` first, inside the loop's reader callback.

        Called only when no earlier bytes wait for :meth:`read`, so the order of the stream is
        kept; ``receiver(data)`` returns True when it consumed ``data`` (``read`` never sees
        it) and False to leave it for ``read``. Lets the wire client resolve a reply without a
        task switch. Only a directly read port uses it; on other ports it is stored and unused.
        """
        self._receiver = receiver
        if self._fdp is not None:
            self._fdp.receiver = receiver

    @property
    def reply_wait_ms(self) -> int:
        """The URL's ``reply_wait_ms`` (0: off); it takes effect on a direct port only."""
        return self.target.reply_wait_ms

    def wait_reply(self, done: Callable[[], bool]) -> None:
        """After a command went out: wait for its reply in ``poll(2)``, at most
        ``reply_wait_ms``, holding the event loop (see :meth:`Link.wait_reply`)."""
        fdp = self._fdp
        if fdp is not None and self.target.reply_wait_ms:
            fdp.wait(done, self.target.reply_wait_ms)

    async def open(self) -> None:
        await self.close()
        t = self.target
        loop = asyncio.get_running_loop()
        try:
            if t.scheme == "socket":
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=t.port, baudrate=t.baudrate
                )
                self._attach(reader, writer)
                return
            port = await asyncio.to_thread(serial.serial_for_url, t.port, baudrate=t.baudrate)
        except (OSError, ValueError) as exc:
            raise LinkError(self.url, _open_error(t, exc)) from exc
        if _is_plain_fd_port(port):
            with contextlib.suppress(serial.SerialException, OSError):
                port.reset_input_buffer()
            self._down = None
            try:
                _read_at_least_one_byte(port.fileno())
                fdp = FdIO(port.fileno(), self.url, loop, self._fd_failed, high_water=HIGH_WATER)
            except (OSError, termios.error) as exc:
                with contextlib.suppress(Exception):
                    port.close()
                raise LinkError(self.url, _open_error(t, exc)) from exc
            fdp.receiver = self._receiver
            self._fdp, self._fd_port = fdp, port
            return
        if t.reply_wait_ms:
            log.warning(
                "%s: reply_wait_ms=%d ignored: the port is not read directly (%s)",
                self.url,
                t.reply_wait_ms,
                type(port).__name__,
            )
        if _has_fileno(port):
            with contextlib.suppress(serial.SerialException, OSError):
                port.reset_input_buffer()
            reader = asyncio.StreamReader(limit=2**20, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport = _SerialTransport(loop, protocol, port)
            self._attach(reader, asyncio.StreamWriter(transport, protocol, reader, loop))
            return
        port.timeout = POLL_S
        self._port = port
        self._down = None
        self._io = BlockingIO(self.url, "serial", self._poll)

    def _describe(self, exc: BaseException) -> str:
        if self.target.scheme == "socket":
            return describe_socket_error(exc, self.target.port)
        # pyserial words a hung-up tty (EOF, or EIO from a pty whose master closed) as
        # "device reports readiness to read but returned no data".
        if getattr(exc, "errno", None) == errno.EIO or "returned no data" in str(exc):
            return self._eof_detail()
        return f"serial port {self.target.port}: {exc}"

    def _eof_detail(self) -> str:
        return f"serial port {self.target.port} closed (EOF/EIO: device gone or pty closed)"

    # --- directly read ports --------------------------------------------------------------

    def _fd_failed(self, op: str, exc: OSError | None) -> str:
        # Worded as the transport path words it: EIO and EOF mean the pty or device went away.
        if self._down is None:
            what = self._eof_detail() if exc is None else self._describe(exc)
            self._down = f"{op} failed: {what}"
        return self._down

    # --- thread-polled ports --------------------------------------------------------------

    def _poll(self) -> bytes | None:
        port = self._port
        try:
            data: bytes = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial's loop:// after close() has no queue left.
            raise LinkDown(self.url, f"read failed: {self._describe(exc)}") from exc
        return data or None

    def _write_blocking(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(self.url, f"write failed: {self._describe(exc)}") from exc

    async def read(self) -> bytes:
        fdp = self._fdp
        if fdp is not None:
            return fdp.take() if fdp.chunks else await fdp.read()
        if self._io is None:
            return await super().read()
        if self._down is not None:
            raise LinkDown(self.url, self._down)
        try:
            return await self._io.read()
        except LinkDown as exc:
            raise self._fail(exc.detail) from exc

    async def write(self, data: bytes) -> None:
        fdp = self._fdp
        if fdp is not None:
            await fdp.write(data)
            return
        if self._io is None:
            await super().write(data)
            return
        if self._down is not None:
            raise LinkDown(self.url, self._down)
        try:
            await self._io.call(lambda: self._write_blocking(data))
        except LinkDown as exc:
            raise self._fail(exc.detail) from exc

    async def close(self) -> None:
        fdp, self._fdp = self._fdp, None
        port, self._fd_port = self._fd_port, None
        if fdp is not None:
            fdp.close()
            with contextlib.suppress(Exception):
                port.close()
            self._down = None
        io_, port, self._io, self._port = self._io, self._port, None, None
        if io_ is not None:
            await io_.stop(grace_s=4 * POLL_S)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)
            self._down = None
        await super().close()
