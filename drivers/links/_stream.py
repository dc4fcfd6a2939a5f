"""The part of every asyncio-stream link (TCP, serial ports with a descriptor, pyserial sockets)."""

from __future__ import annotations

import asyncio
import contextlib

from ._base import Link, LinkDown

READ_SIZE = 256 * 1024
CLOSE_GRACE_S = 1.0


class StreamLink(Link):
    """Read and write over an asyncio ``StreamReader``/``StreamWriter`` pair set by ``open``.

    Once ``read`` or ``write`` has raised :class:`LinkDown`, the link stays down (``is_open``
    False) until closed and opened again: a half-dead stream is never used again.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._down: str | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None and self._down is None

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer, self._down = reader, writer, None

    def _describe(self, exc: BaseException) -> str:
        """What a read/write error means on this transport (overridden for nicer wording)."""
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def _eof_detail(self) -> str:
        return "peer closed the connection (EOF)"

    def _fail(self, detail: str) -> LinkDown:
        if self._down is None:
            self._down = detail
        return LinkDown(self.url, self._down)

    async def read(self) -> bytes:
        reader = self._reader
        if reader is None:
            raise LinkDown(self.url, "not open")
        if self._down is not None:
            raise LinkDown(self.url, self._down)
        try:
            data = await reader.read(READ_SIZE)
        except (OSError, EOFError) as exc:
            raise self._fail(f"read failed: {self._describe(exc)}") from exc
        if not data:
            raise self._fail(self._eof_detail())
        return data

    async def write(self, data: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise LinkDown(self.url, "not open")
        if self._down is not None:
            raise LinkDown(self.url, self._down)
        # A closing transport silently drops writes; that must be an error here, not a loss.
        if writer.transport.is_closing():
            raise self._fail("transport closed")
        if self._reader is not None and self._reader.at_eof():
            raise self._fail(self._eof_detail())
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, EOFError, RuntimeError) as exc:
            raise self._fail(f"write failed: {self._describe(exc)}") from exc

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self._down = None
        if writer is None:
            return
        with contextlib.suppress(Exception):
            writer.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                await writer.wait_closed()
        except TimeoutError:
            # A stuck flush (peer not reading) must not hold close() up: drop what is left.
            with contextlib.suppress(Exception):
                writer.transport.abort()
        except Exception:
            pass  # already closed, by the error that took the link down
