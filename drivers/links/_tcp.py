"""``tcp://HOST:PORT``: a TCP client connection (asyncio streams, Nagle off).

``tcp+tls://HOST:PORT?ca=PATH[&cert=PATH&key=PATH]`` is the same over TLS: the device's
certificate must be signed by the CA in ``ca`` (else the system's trusted CAs) and name HOST;
``cert``/``key`` are this host's certificate for devices that require one. A failed handshake
(untrusted certificate, a device that does not speak TLS) is a :class:`LinkError` saying so.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass

from ._base import LinkError
from ._stream import StreamLink
from ._tls import TLS_OPTIONS, TlsFiles, describe_tls_error
from ._url import TCP_FORM, bad_url, host_port, query, reject_unknown, split

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class TcpTarget:
    host: str
    port: int
    tls: TlsFiles | None  # None: plain TCP


def parse_tcp_target(url: str) -> TcpTarget:
    """Address and, for ``tcp+tls://``, the TLS files; ValueError naming the URL."""
    parts = split(url, TCP_FORM)
    if parts.scheme not in ("tcp", "tcp+tls"):
        raise bad_url(url, f"scheme {parts.scheme!r} is not tcp or tcp+tls", TCP_FORM)
    if parts.path not in ("", "/"):
        raise bad_url(url, "a TCP link has no path", TCP_FORM)
    options = query(url, parts, TCP_FORM)
    secure = parts.scheme == "tcp+tls"
    reject_unknown(url, options, set(TLS_OPTIONS) if secure else set(), TCP_FORM)
    host, port = host_port(url, parts, TCP_FORM, None)
    return TcpTarget(host, port, TlsFiles.from_options(url, options, TCP_FORM) if secure else None)


def parse_tcp_url(url: str) -> tuple[str, int]:
    target = parse_tcp_target(url)
    return target.host, target.port


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
        self.target = parse_tcp_target(url)
        self.host, self.port = self.target.host, self.target.port
        self._connect_timeout_s = connect_timeout_s

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    async def open(self) -> None:
        await self.close()
        tls = self.target.tls
        context = tls.client_context(self.url) if tls is not None else None
        try:
            async with asyncio.timeout(self._connect_timeout_s * (2 if context else 1)):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=context,
                    ssl_handshake_timeout=self._connect_timeout_s if context else None,
                )
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise LinkError(self.url, self._open_error(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Frames are small and latency-bound (replies within 250 ms); never wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._attach(reader, writer)

    def _open_error(self, exc: BaseException) -> str:
        tls = self.target.tls
        if tls is not None:
            about_tls = describe_tls_error(exc, self._where, tls.ca)
            if about_tls is not None:
                return about_tls
            if isinstance(exc, ConnectionResetError | ConnectionAbortedError | EOFError):
                # A device that does not speak TLS, or refused us, hangs up mid-handshake.
                return f"TLS: {self._where} closed the connection during the handshake"
            if isinstance(exc, TimeoutError):
                return f"TLS: {self._where} did not complete a handshake (not a TLS service?)"
        return describe_socket_error(exc, self._where)

    def _describe(self, exc: BaseException) -> str:
        tls = self.target.tls
        about_tls = describe_tls_error(exc, self._where, tls.ca) if tls is not None else None
        # TLS 1.3 reports a refused client certificate on the first read, not in the handshake.
        return about_tls or describe_socket_error(exc, self._where)

    def _eof_detail(self) -> str:
        tls = self.target.tls
        if tls is not None and tls.cert is None:
            # asyncio's TLS server drops a client without a certificate without an alert.
            return (
                f"{self._where} closed the TLS connection (EOF; a device that requires a "
                "client certificate does this: give cert= and key=)"
            )
        return f"{self._where} closed the connection (EOF)"
