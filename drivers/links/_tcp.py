"""``tcp://HOST:PORT``: a TCP client connection (asyncio streams, Nagle off)."""

from __future__ import annotations

import asyncio
import errno
import socket

from ._base import LinkError
from ._stream import StreamLink
from ._url import TCP_FORM, bad_url, host_port, query, reject_unknown, split

CONNECT_TIMEOUT_S = 5.0


def parse_tcp_url(url: str) -> tuple[str, int]:
    parts = split(url, TCP_FORM)
    if parts.scheme != "tcp":
        raise bad_url(url, f"scheme {parts.scheme!r} is not tcp", TCP_FORM)
    if parts.path not in ("", "/"):
        raise bad_url(url, "a TCP link has no path", TCP_FORM)
    reject_unknown(url, query(url, parts, TCP_FORM), set(), TCP_FORM)
    return host_port(url, parts, TCP_FORM, None)


def describe_socket_error(exc: BaseException, where: str) -> str:
    """Plain words for the socket errors a link meets (the errno names are for logs)."""
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused connection"
    if isinstance(exc, ConnectionResetError):
        return f"connection to {where} reset by peer"
    if isinstance(exc, BrokenPipeError):
        return f"connection to {where} broken (peer gone)"
    if isinstance(exc, TimeoutError):
        return f"{where} did not answer in time"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where}: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno == errno.EHOSTUNREACH:
        return f"{where} unreachable"
    return f"{where}: {type(exc).__name__}: {exc}"


class TcpLink(StreamLink):
    """Client side of a TCP link. ``read`` returns whatever arrived (up to 256 KiB)."""

    def __init__(self, url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        super().__init__(url)
        self.host, self.port = parse_tcp_url(url)
        self._connect_timeout_s = connect_timeout_s

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    async def open(self) -> None:
        await self.close()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise LinkError(self.url, describe_socket_error(exc, self._where)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Frames are small and latency-bound (replies within 250 ms); never wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._attach(reader, writer)

    def _describe(self, exc: BaseException) -> str:
        return describe_socket_error(exc, self._where)

    def _eof_detail(self) -> str:
        return f"{self._where} closed the connection (EOF)"
