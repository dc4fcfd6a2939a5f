"""A host written with the codec and the session module alone, for device-endpoint tests.

It sends exactly the frames a test gives it (sealed with its session, or plain, or replayed
bytes), records every frame it receives with the verdict of its session's check, and opens a
session with the same two requests any host must send (docs/wire-protocol.md §7.2).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from drivers.links import Link
from drivers.wire import Frame, FrameDecoder, Reply, Scalar, Status, encode_frame, request
from drivers.wire.keys import RoomKey
from drivers.wire.session import HostHandshake, Role, Session, Verdict, new_host_id


class RawHost:
    def __init__(self, link: Link, device: int, key: RoomKey) -> None:
        self.link = link
        self.device = device
        self.key = key
        self.host_id = new_host_id()
        self.session: Session | None = None
        self.frames: list[tuple[float, Frame, Verdict]] = []
        self.sent: list[bytes] = []
        self._decoder = FrameDecoder()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0

    async def open(self) -> None:
        await self.link.open()
        self._task = asyncio.create_task(self._pump())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.link.close()

    async def _pump(self) -> None:
        while True:
            data = await self.link.read()
            now = asyncio.get_running_loop().time()
            for item in self._decoder.feed(data):
                if isinstance(item, Frame):
                    verdict = (
                        Verdict.UNAUTHENTICATED
                        if self.session is None or item.auth is None
                        else self.session.check(item.auth)
                    )
                    self.frames.append((now, item, verdict))
            self._arrived.set()

    # --- sending ----------------------------------------------------------------------------

    async def send(self, data: Frame | bytes, *, sealed: bool = True) -> bytes:
        """Send a frame (sealed with the session, if one is open and ``sealed``) or raw bytes;
        returns the bytes written (for a replay)."""
        if isinstance(data, Frame):
            seal = self.session.seal if sealed and self.session is not None else None
            data = encode_frame(data, seal)
        self.sent.append(data)
        await self.link.write(data)
        return data

    async def open_session(self, role: Role = Role.CONTROL, key: RoomKey | None = None) -> Reply:
        """Run the handshake; the device's reply to ``link.auth`` (the session is kept if OK)."""
        hs = HostHandshake(key or self.key, self.device, role, self.host_id)
        hello = await self.call(self._next(), "link.hello", sealed=False, **hs.hello())
        assert hello.status is Status.OK, hello
        fields, candidate = hs.answer(hello.fields)
        self.session = candidate
        reply = await self.call(self._next(), "link.auth", sealed=False, **fields)
        if reply.status is not Status.OK:
            self.session = None
        return reply

    def _next(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    # --- receiving --------------------------------------------------------------------------

    def of(self, kind: type, *, verified: bool = True) -> list[Frame]:
        """Frames of ``kind`` received; only those the session verified, unless told."""
        return [
            f
            for _, f, v in self.frames
            if isinstance(f.message, kind)
            and (not verified or v is Verdict.OK or (self.session is None and f.auth is None))
        ]

    async def wait_for(self, pred: Callable[[], Any], within: float = 1.0) -> Any:
        async with asyncio.timeout(within):
            while not (result := pred()):
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), 0.005)
            return result

    async def call(self, seq: int, command: str, *, sealed: bool = True, **args: Scalar) -> Reply:
        before = len(self.frames)
        await self.send(request(seq, self.device, command, **args), sealed=sealed)

        def got() -> Reply | None:
            for _, f, v in self.frames[before:]:
                if f.seq == seq and isinstance(f.message, Reply) and v is not Verdict.BAD_TAG:
                    return f.message
            return None

        reply: Reply = await self.wait_for(got)
        return reply


class RawDevice:
    """The device side of the handshake for hand-written test devices: feed it each request;
    it answers ``link.hello``/``link.auth`` itself and says whether the frame was one."""

    def __init__(self, link: Link, device: int, key: RoomKey) -> None:
        from drivers.wire.session import DeviceHandshakes

        self.link = link
        self.device = device
        self._handshakes = DeviceHandshakes(key, device)
        self.session: Session | None = None

    async def handshake(self, frame: Frame) -> bool:
        from drivers.wire import Request, reply

        msg = frame.message
        if not isinstance(msg, Request) or msg.command not in ("link.hello", "link.auth"):
            return False
        if msg.command == "link.hello":
            fields = self._handshakes.hello(msg.args, set())
            await self.link.write(encode_frame(reply(frame.seq, self.device, Status.OK, **fields)))
        else:
            self.session = self._handshakes.auth(msg.args)
            out = reply(frame.seq, self.device, Status.OK, state="READY")
            await self.link.write(encode_frame(out, self.session.seal))
        return True

    async def send(self, frame: Frame) -> None:
        assert self.session is not None
        await self.link.write(encode_frame(frame, self.session.seal))


class Bus:
    """A shared medium (as an MQTT topic pair is): every host's writes reach the device, every
    device write reaches every open host. ``MemoryCable`` is point to point (one host at a
    time); the session layer must also hold where several hosts hear the same device."""

    def __init__(self) -> None:
        self._to_device: asyncio.Queue[bytes] = asyncio.Queue()
        self._hosts: list[_BusHost] = []
        self.device_link: Link = _BusDevice(self)

    def host_link(self) -> Link:
        return _BusHost(self)


class _BusDevice(Link):
    def __init__(self, bus: Bus) -> None:
        super().__init__("bus://device")
        self._bus = bus
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        self._open = True

    async def read(self) -> bytes:
        return await self._bus._to_device.get()

    async def write(self, data: bytes) -> None:
        for host in self._bus._hosts:
            host.inbox.put_nowait(bytes(data))

    async def close(self) -> None:
        self._open = False


class _BusHost(Link):
    def __init__(self, bus: Bus) -> None:
        super().__init__("bus://host")
        self._bus = bus
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    @property
    def is_open(self) -> bool:
        return self in self._bus._hosts

    async def open(self) -> None:
        self._bus._hosts.append(self)

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        self._bus._to_device.put_nowait(bytes(data))

    async def close(self) -> None:
        if self in self._bus._hosts:
            self._bus._hosts.remove(self)
