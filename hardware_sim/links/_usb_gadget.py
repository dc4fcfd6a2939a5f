"""Device side of a simulated USB bulk device, served over TCP to ``hardware_sim.usb_backend``.

One interface, bulk OUT ``0x01`` (host → device) and bulk IN ``0x81`` (device → host). As a
:class:`Link`: ``read`` returns one OUT transfer the host wrote, ``write`` queues bytes for IN.

Semantics (what the firmware of a real bulk device would see):

- IN data is a FIFO. One host read takes as much as is queued, up to the host's buffer size
  (several device writes may arrive in one read, like max-size packets without a short packet
  between them; the link is a byte stream to the wire decoder).
- Flow control: while a host is attached, ``write`` waits while more than ``in_high_water``
  bytes are queued (the host is slower than the device; USB NAKs the device's packets). With no
  host attached nothing waits: the oldest queued writes are dropped beyond ``in_high_water``
  (overrun), so firmware heartbeats never block on an unplugged cable.
- Queued IN data survives the host closing and reopening the device.
- Fault hook :meth:`fail_next_transfers`: the next N transfers (on one endpoint, or on either
  in the order they arrive) fail; the host's pyusb call raises ``USBError``. A failed OUT
  transfer is discarded; a failed IN transfer takes no data (the next read after reopen gets
  it).
- :meth:`drop_host` cuts every host connection (cable pulled and put back): the host's next
  transfer fails with "no such device" and reopening finds the gadget again.
- The gadget, like the other device links, never raises :class:`LinkDown` for host-side
  trouble; only after :meth:`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque

from drivers.links import Link, LinkDown

from ..usb_backend import HEADER, READ_REQ, U32, Msg, pack

DEFAULT_HIGH_WATER = 8 * 1024 * 1024
OUT_QUEUE_TRANSFERS = 256


class UsbGadget(Link):
    def __init__(
        self,
        vendor_id: int = 0x1209,
        product_id: int = 0xF10C,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interface: int = 0,
        out_ep: int = 0x01,
        in_ep: int = 0x81,
        serial: str = "FLUOROSIM-0001",
        in_high_water: int = DEFAULT_HIGH_WATER,
    ) -> None:
        self.vendor_id, self.product_id = vendor_id, product_id
        self.host, self.port = host, port
        self.interface, self.out_ep, self.in_ep = interface, out_ep, in_ep
        self.serial = serial
        super().__init__(self._own_url())
        self._high_water = in_high_water
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_conn: asyncio.StreamWriter | None = None
        self._out_conn: asyncio.StreamWriter | None = None
        self._in: deque[memoryview] = deque()
        self._in_bytes = 0
        self._in_data = asyncio.Event()
        self._in_space = asyncio.Event()
        self._host_changed = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue(OUT_QUEUE_TRANSFERS)
        self._fail_budget: dict[int | None, int] = {}
        self._closed = False
        self.transfers_failed = 0
        self.in_bytes_dropped = 0

    def _own_url(self) -> str:
        return f"usb-gadget://{self.vendor_id:04x}:{self.product_id:04x}@{self.host}:{self.port}"

    @property
    def host_url(self) -> str:
        """The URL a host opens this gadget with (``drivers.links.open_link``)."""
        return (
            f"usb://{self.vendor_id:04x}:{self.product_id:04x}?backend=sim&host={self.host}"
            f"&port={self.port}&interface={self.interface}"
            f"&out=0x{self.out_ep:02x}&in=0x{self.in_ep:02x}"
        )

    @property
    def is_open(self) -> bool:
        return self._server is not None and not self._closed

    @property
    def host_attached(self) -> bool:
        """A host has the IN pipe open (it is polling for data)."""
        return self._in_conn is not None

    @property
    def in_backlog(self) -> int:
        """IN bytes queued and not yet taken by the host."""
        return self._in_bytes

    async def wait_host(self, timeout_s: float = 5.0) -> None:
        """Until a host polls the IN pipe (its link's first read); TimeoutError otherwise."""
        async with asyncio.timeout(timeout_s):
            while self._in_conn is None:
                self._host_changed.clear()
                await self._host_changed.wait()

    # --- fault hooks ---------------------------------------------------------------------

    def fail_next_transfers(self, n: int = 1, *, endpoint: int | None = None) -> None:
        """The next ``n`` bulk transfers fail with an I/O error: on ``endpoint`` (``0x01``,
        ``0x81``) only, or on either pipe (``None``: whichever transfers come first; the host
        polls IN continuously, so that is usually IN)."""
        if endpoint not in (None, self.in_ep, self.out_ep):
            raise ValueError(f"no endpoint 0x{endpoint:02x}")
        self._fail_budget[endpoint] = self._fail_budget.get(endpoint, 0) + n

    def drop_host(self) -> None:
        """Cut every host connection (cable pulled); the gadget keeps serving new ones."""
        self._in_conn = self._out_conn = None
        self._in_space.set()
        for writer in list(self._conns):
            writer.transport.abort()

    # --- Link ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._server is not None:
            return
        self._closed = False
        self._out = asyncio.Queue(OUT_QUEUE_TRANSFERS)  # a reopen starts clean, past "closed"
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = self._own_url()

    async def read(self) -> bytes:
        if self._closed or self._server is None:
            raise LinkDown(self.url, "closed")
        item = await self._out.get()
        if item is None:
            self._out.put_nowait(None)  # every later read sees "closed" too
            raise LinkDown(self.url, "closed")
        return item

    async def write(self, data: bytes) -> None:
        if self._closed or self._server is None:
            raise LinkDown(self.url, "closed")
        if not data:
            return
        # Kept as given when immutable: a 2 MiB image is queued without a copy.
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        async with self._write_lock:
            while self._in_conn is not None and self._in_bytes >= self._high_water:
                self._in_space.clear()
                await self._in_space.wait()
                if self._closed:
                    raise LinkDown(self.url, "closed")
            if self._in_conn is None:
                while self._in and self._in_bytes + len(view) > self._high_water:
                    dropped = self._in.popleft()
                    self._in_bytes -= len(dropped)
                    self.in_bytes_dropped += len(dropped)
            self._in.append(view)
            self._in_bytes += len(view)
            self._in_data.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_host()
        self._in_data.set()
        self._in_space.set()
        while not self._out.empty():
            self._out.get_nowait()
        self._out.put_nowait(None)
        if self._tasks:  # let the connection handlers finish rather than be cancelled later
            await asyncio.wait(set(self._tasks), timeout=1.0)
        if server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    # --- serving the backend -------------------------------------------------------------

    def _descriptor(self) -> bytes:
        d = {
            "vendor_id": self.vendor_id,
            "product_id": self.product_id,
            "interface": self.interface,
            "out_ep": self.out_ep,
            "in_ep": self.in_ep,
            "serial": self.serial,
        }
        return json.dumps(d).encode()

    def _take_failure(self, endpoint: int) -> bool:
        for key in (endpoint, None):
            if self._fail_budget.get(key, 0) > 0:
                self._fail_budget[key] -= 1
                break
        else:
            return False
        self.transfers_failed += 1
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while not self._closed:
                kind, length = HEADER.unpack(await reader.readexactly(HEADER.size))
                payload = await reader.readexactly(length) if length else b""
                if kind == Msg.DESCRIBE:
                    writer.write(pack(Msg.DESCRIPTOR, self._descriptor()))
                elif kind == Msg.ATTACH and len(payload) == 1:
                    self._attach(writer, payload[0])
                elif kind == Msg.READ and writer is self._in_conn and len(payload) == 8:
                    await self._serve_read(reader, writer, *READ_REQ.unpack(payload))
                elif kind == Msg.OUT and writer is self._out_conn and len(payload) >= 4:
                    await self._serve_out(writer, U32.unpack_from(payload)[0], payload[4:])
                else:
                    # Out of protocol (or superseded by a newer attach): this connection ends.
                    writer.write(pack(Msg.ERROR, f"unexpected message {kind}".encode()))
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(writer)
            if self._in_conn is writer:
                self._in_conn = None
                self._in_space.set()  # a blocked write() switches to "no host" rules
            if self._out_conn is writer:
                self._out_conn = None
            writer.transport.abort()
            if task is not None:
                self._tasks.discard(task)

    def _attach(self, writer: asyncio.StreamWriter, ep: int) -> None:
        if ep not in (self.in_ep, self.out_ep):
            writer.write(pack(Msg.ERROR, f"no endpoint 0x{ep:02x}".encode()))
            return
        # One host at a time: a new attach (host reopened) supersedes the old connection.
        old = self._in_conn if ep == self.in_ep else self._out_conn
        if old is not None and old is not writer:
            old.transport.abort()
        if ep == self.in_ep:
            self._in_conn = writer
            self._host_changed.set()
        else:
            self._out_conn = writer
        writer.write(pack(Msg.OK, U32.pack(0)))

    async def _serve_read(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_len: int,
        timeout_ms: int,
    ) -> None:
        if self._take_failure(self.in_ep):
            writer.write(pack(Msg.ERROR, b"injected transfer failure (IN)"))
            return
        if not self._in:
            try:
                async with asyncio.timeout(timeout_ms / 1000 if timeout_ms else None):
                    await self._in_data.wait()
            except TimeoutError:
                writer.write(pack(Msg.TIMEOUT))
                return
        gone = writer is not self._in_conn or writer.transport.is_closing() or reader.at_eof()
        if gone or not self._in:
            # Superseded, cut or closed by the host while waiting (the data stays queued for
            # the next host read, as in a device FIFO), or woken by close().
            writer.write(pack(Msg.TIMEOUT))
            return
        pieces: list[memoryview] = []
        taken = 0
        while self._in and taken < max_len:
            head = self._in[0]
            room = max_len - taken
            if len(head) <= room:
                pieces.append(self._in.popleft())
                taken += len(head)
            else:
                pieces.append(head[:room])
                self._in[0] = head[room:]
                taken += room
        self._in_bytes -= taken
        if not self._in:
            self._in_data.clear()
        if self._in_bytes < self._high_water:
            self._in_space.set()
        writer.write(HEADER.pack(Msg.IN, taken))
        for piece in pieces:
            writer.write(piece)

    async def _serve_out(self, writer: asyncio.StreamWriter, timeout_ms: int, data: bytes) -> None:
        if self._take_failure(self.out_ep):
            writer.write(pack(Msg.ERROR, b"injected transfer failure (OUT)"))
            return
        if not data:  # a zero-length packet carries nothing for the firmware to read
            writer.write(pack(Msg.OK, U32.pack(0)))
            return
        try:
            async with asyncio.timeout(timeout_ms / 1000 if timeout_ms else None):
                await self._out.put(data)
        except TimeoutError:
            writer.write(pack(Msg.TIMEOUT))
            return
        writer.write(pack(Msg.OK, U32.pack(len(data))))
