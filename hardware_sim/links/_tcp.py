"""Device side of a TCP link: a listening socket that serves one host at a time.

Semantics (a networked device whose firmware keeps running whatever the host does):

- ``read`` returns bytes from the current host. When the host disconnects, ``read`` does not
  fail: it waits for the next host's bytes.
- A new connection supersedes the current one (the old one is closed): a host that restarted
  or lost its connection half-open gets through at once instead of being locked out.
- ``write`` sends to the current host; with no host connected the bytes are dropped (sent to
  nobody), and a write to a host that vanished mid-write is dropped too.
- Only :meth:`close` makes ``read``/``write`` raise :class:`LinkDown`.
Fault hook: :meth:`drop_peer` resets the current connection (RST), as a crashed switch would.

With an ``ssl_context`` (``drivers.links._tls.server_context``) every connection is TLS
(``host_url``: ``tcp+tls://``); a client that fails the handshake (plaintext, untrusted or
missing client certificate) never reaches the device, nor supersedes the current host.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct

from drivers.links import Link, LinkDown

HANDSHAKE_TIMEOUT_S = 5.0
READ_SIZE = 256 * 1024
QUEUE_CHUNKS = 64  # reads buffered for the device before the socket stops being read


class TcpServerLink(Link):
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host, self.port = host, port
        self._ssl = ssl_context
        super().__init__(f"tcp-listen://{host}:{port}")
        self._server: asyncio.Server | None = None
        self._peer: asyncio.StreamWriter | None = None
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_CHUNKS)
        self._peer_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.peers_served = 0

    @property
    def host_url(self) -> str:
        """The URL the host opens; a ``tcp+tls://`` one still needs the host's ``ca=``."""
        scheme = "tcp" if self._ssl is None else "tcp+tls"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._server is not None and not self._closed

    @property
    def peer_connected(self) -> bool:
        return self._peer is not None

    async def wait_peer(self, timeout_s: float = 5.0) -> None:
        """Until a host is connected; TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self._peer is None:
                self._peer_changed.clear()
                await self._peer_changed.wait()

    def drop_peer(self) -> None:
        """Reset the current host connection (RST, not FIN): the host sees a reset."""
        peer = self._peer
        if peer is None:
            return
        sock = peer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.transport.abort()

    async def open(self) -> None:
        if self._server is not None:
            return
        self._closed = False
        self._incoming = asyncio.Queue(QUEUE_CHUNKS)  # a reopen starts clean, past the "closed"
        self._server = await asyncio.start_server(
            self._serve,
            self.host,
            self.port,
            ssl=self._ssl,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if self._ssl else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"tcp-listen://{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        old, self._peer = self._peer, writer
        if old is not None:
            old.transport.abort()
        self.peers_served += 1
        self._peer_changed.set()
        try:
            while not self._closed and self._peer is writer:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                # A full queue blocks here, so the socket stops being read: TCP flow control.
                await self._incoming.put(data)
        except (ConnectionError, OSError):
            pass
        finally:
            if self._peer is writer:
                self._peer = None
                self._peer_changed.set()
            writer.transport.abort()
            if task is not None:
                self._tasks.discard(task)

    async def read(self) -> bytes:
        if self._closed or self._server is None:
            raise LinkDown(self.url, "closed")
        data = await self._incoming.get()
        if data is None:
            self._incoming.put_nowait(None)
            raise LinkDown(self.url, "closed")
        return data

    async def write(self, data: bytes) -> None:
        if self._closed or self._server is None:
            raise LinkDown(self.url, "closed")
        peer = self._peer
        if peer is None or peer.transport.is_closing():
            return
        try:
            peer.write(data)
            await peer.drain()
        except (ConnectionError, OSError):
            pass  # the host vanished mid-write; its bytes go nowhere, the next host is served

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._peer is not None:
            self._peer.transport.abort()
        while not self._incoming.empty():
            self._incoming.get_nowait()
        self._incoming.put_nowait(None)
        self._peer_changed.set()
        if self._tasks:  # let the connection handlers finish rather than be cancelled later
            await asyncio.wait(set(self._tasks), timeout=1.0)
        if server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()
