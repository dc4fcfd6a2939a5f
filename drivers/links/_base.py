"""What every transport offers the wire layer: an ordered, lossy-at-worst byte pipe to one peer.

A link carries encoded wire frames (docs/wire-protocol.md). Serial, TCP and USB bulk links may
split or join writes arbitrarily (a USB read returns up to one read buffer of whatever the
device queued); MQTT delivers each write whole, as one read. The decoder handles both the same
way. A link never interprets bytes: framing, CRC, retries and heartbeats belong to the wire
endpoint above it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType


class LinkError(Exception):
    """A link could not be opened or used. ``url`` names the link, ``detail`` what happened."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"link {url}: {detail}")
        self.url = url
        self.detail = detail


class LinkDown(LinkError):
    """The link dropped (port closed, peer gone, broker restarted, USB transfer failed).

    Reopening may succeed: the endpoint above decides whether and how often to try.
    """


class Link(ABC):
    """One byte pipe. ``read`` and ``write`` raise :class:`LinkDown` once the pipe is gone.

    Not safe for concurrent readers; one reader task and any number of writers is the contract
    (writes are whole: a frame is never interleaved with another writer's frame).

    ``is_open`` is True from a successful ``open`` until ``close`` or until ``read``/``write``
    has raised :class:`LinkDown`; a link that went down stays down until it is opened again.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    async def open(self) -> None:
        """Connect; raises :class:`LinkError` (or :class:`LinkDown`) when the peer is not there."""

    @abstractmethod
    async def read(self) -> bytes:
        """The next bytes from the peer (at least one byte); :class:`LinkDown` when gone."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Send ``data`` whole; :class:`LinkDown` when gone."""

    @abstractmethod
    async def close(self) -> None:
        """Release the link. Idempotent; never raises."""

    def wait_reply(self, done: Callable[[], bool]) -> None:
        """Optional low-latency receive, called right after a command was written.

        A link that supports it (a directly read serial port with ``reply_wait_ms``) blocks
        the calling thread, and with it the event loop, for a short bounded time, handing
        whatever arrives to its reader exactly as the loop would, until ``done()``. This
        saves the event loop's wake-up and task switch on a fast link. Other links return at
        once; the caller then waits in the event loop as usual, so correctness never depends
        on this method.
        """
        return

    async def __aenter__(self) -> Link:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
