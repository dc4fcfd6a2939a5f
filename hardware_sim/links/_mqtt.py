"""Device side of an MQTT link: ``drivers.links.MqttLink`` in the device role, kept connected.

Like the other device links, the device survives trouble on the other side: when the broker
goes away it reconnects in the background (50 ms doubling to 1 s between attempts) and
``read`` simply waits; ``write`` while disconnected drops the message (QoS 0: nobody would have
received it). Only :meth:`close` makes ``read``/``write`` raise :class:`LinkDown`; the first
connection, in :meth:`open`, must succeed (a wrong broker address is a setup error).
"""

from __future__ import annotations

import asyncio
import contextlib

from drivers.links import Link, LinkDown, LinkError, MqttLink

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 1.0
QUEUE_MESSAGES = 1024


class MqttDeviceLink(Link):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._inner = MqttLink(url, role="device")
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_MESSAGES)
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = True
        self.reconnects = 0
        self.messages_dropped = 0

    @property
    def is_open(self) -> bool:
        return not self._closed

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()

    async def open(self) -> None:
        if not self._closed:
            return
        await self._inner.open()  # LinkError when the broker is not there
        self._closed = False
        self._incoming = asyncio.Queue(QUEUE_MESSAGES)  # a reopen starts clean, past "closed"
        self._connected.set()
        self._task = asyncio.create_task(self._pump(), name=f"mqtt-device {self.url}")

    async def _pump(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._closed:
            if not self._connected.is_set():
                try:
                    await self._inner.open()
                except LinkError:
                    await asyncio.sleep(backoff)
                    backoff = min(BACKOFF_MAX_S, backoff * 2)
                    continue
                backoff = BACKOFF_MIN_S
                self.reconnects += 1
                self._connected.set()
            try:
                data = await self._inner.read()
            except LinkDown:
                self._connected.clear()
                await self._inner.close()
                continue
            if self._incoming.full():
                self.messages_dropped += 1  # the firmware is not reading; QoS 0 loses it
                continue
            self._incoming.put_nowait(data)

    async def read(self) -> bytes:
        if self._closed:
            raise LinkDown(self.url, "closed")
        data = await self._incoming.get()
        if data is None:
            self._incoming.put_nowait(None)
            raise LinkDown(self.url, "closed")
        return data

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise LinkDown(self.url, "closed")
        if not self._connected.is_set():
            self.messages_dropped += 1
            return
        try:
            await self._inner.write(data)
        except LinkDown:
            self.messages_dropped += 1
            # Closing the client ends the pump's pending read too, and the pump reconnects.
            self._connected.clear()
            await self._inner.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._inner.close()
        self._connected.clear()
        while not self._incoming.empty():
            self._incoming.get_nowait()
        self._incoming.put_nowait(None)
