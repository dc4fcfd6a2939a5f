"""From the exam to the browsers: the folded view and one bounded queue per browser.

:meth:`ConsoleHub.publish` is called on the exam's side for each journal line (and the
display-only ``waiting`` events); it folds the line into the view and appends it to every
connected browser's queue under a lock — it never waits for a browser. A queue holds at
most ``maxsize`` lines: a browser that stops reading loses its oldest lines (counted in
``dropped``) and still gets the whole current view with the next batch, so it shows the
present, not the past.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from typing import Any

from .view import ExamView

#: lines a browser may fall behind before its oldest are dropped
MAXSIZE = 256


class Client:
    """One browser's queue; woken on its server's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._loop = loop
        self._lines: collections.deque[dict[str, Any]] = collections.deque()
        self._maxsize = maxsize
        self._wake = asyncio.Event()
        self._lock = threading.Lock()
        self.dropped = 0
        self.closed = False

    def put(self, line: dict[str, Any]) -> None:
        with self._lock:
            if len(self._lines) >= self._maxsize:
                self._lines.popleft()
                self.dropped += 1
            self._lines.append(line)
        with contextlib.suppress(RuntimeError):  # the server's loop has closed
            self._loop.call_soon_threadsafe(self._wake.set)

    def __len__(self) -> int:
        return len(self._lines)

    async def take(self) -> list[dict[str, Any]]:
        """The lines queued so far; waits while there are none (empty once closed)."""
        while True:
            with self._lock:
                lines = list(self._lines)
                self._lines.clear()
                self._wake.clear()
            if lines or self.closed:
                return lines
            await self._wake.wait()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake.set)


class ConsoleHub:
    """The exam's view and the browsers watching it (thread-safe)."""

    def __init__(self, view: ExamView | None = None, maxsize: int = MAXSIZE) -> None:
        self.view = view or ExamView()
        self._maxsize = maxsize
        self._clients: list[Client] = []
        self._lock = threading.Lock()

    def publish(self, line: dict[str, Any]) -> None:
        with self._lock:
            self.view.apply(line)
            clients = list(self._clients)
        for client in clients:
            client.put(line)

    def set_live(self, **fields: Any) -> None:
        """Update what is not a journal line (the pending prompt, the clock) and tell everyone."""
        with self._lock:
            self.view.live.update(fields)
            clients = list(self._clients)
        for client in clients:
            client.put({"kind": "live"})

    def add_curve_point(self, t_s: float, values: dict[str, float]) -> None:
        """A point of the simulated patient's contrast curves (not a journal line)."""
        with self._lock:
            self.view.add_curve_point(t_s, values)
            clients = list(self._clients)
        for client in clients:
            client.put({"kind": "live"})

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.view.snapshot()

    def connect(self, loop: asyncio.AbstractEventLoop) -> Client:
        client = Client(loop, self._maxsize)
        with self._lock:
            self._clients.append(client)
        return client

    def disconnect(self, client: Client) -> None:
        client.close()
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    @property
    def clients(self) -> list[Client]:
        with self._lock:
            return list(self._clients)
