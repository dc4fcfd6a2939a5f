"""The session layer at both ends, on virtual time over the in-memory cable (§7).

The same attacks as tests/e2e/test_link_attacks.py, fast and exact: what the device executes,
what it refuses and counts, what the host drops and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from drivers.clock import Clock
from drivers.errors import (
    AuthenticationFailed,
    ControlRefused,
    DeviceFault,
    DeviceStateError,
    ProtocolMismatch,
)
from drivers.links import LinkError
from drivers.links.memory import MemoryCable
from drivers.wire import (
    Frame,
    FrameDecoder,
    Reply,
    Scalar,
    Status,
    encode_frame,
    encode_raw,
    event,
    heartbeat,
    request,
)
from drivers.wire.client import WireClient
from drivers.wire.keys import RoomKey
from drivers.wire.session import Role, Session
from hardware_sim.wire import DeviceEndpoint
from tests.keys import TEST_KEY
from tests.virtual_time import virtual_time
from tests.wire.raw import Bus, RawHost

DEV = 2


class Device:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def handle(
        self, command: str, f: Mapping[str, Scalar]
    ) -> tuple[Status, Mapping[str, Scalar]]:
        self.calls[command] += 1
        return Status.OK, {"done": command}


@contextlib.asynccontextmanager
async def device(
    medium: MemoryCable | Bus | None = None, **kw: Any
) -> AsyncIterator[tuple[DeviceEndpoint, Device, Any]]:
    cable, dev = medium or MemoryCable(), Device()
    ep = DeviceEndpoint(
        cable.device_link,
        device_id=DEV,
        name="injector",
        handler=dev.handle,
        clock=Clock.for_running_loop(),
        key=TEST_KEY,
        **kw,
    )
    task = asyncio.create_task(ep.serve())
    await asyncio.sleep(0.01)
    try:
        yield ep, dev, cable
    finally:
        await ep.close()
        await asyncio.gather(task, return_exceptions=True)


def client(cable: MemoryCable | Bus, **kw: Any) -> WireClient:
    kw.setdefault("key", TEST_KEY)
    return WireClient(
        cable.host_link, device_id=DEV, name="injector", clock=Clock.for_running_loop(), **kw
    )


@virtual_time
async def test_frames_outside_a_session_are_not_read() -> None:
    async with device() as (ep, dev, cable):
        host = RawHost(cable.host_link(), DEV, TEST_KEY)
        await host.open()
        await host.send(request(1, DEV, "start"))
        await host.send(request(2, DEV, "arm", volume_ml=500))
        stranger = Session(5, Role.CONTROL, "x", k_out=os.urandom(32), k_in=os.urandom(32))
        await host.send(encode_frame(request(3, DEV, "start"), stranger.seal))
        await asyncio.sleep(0.2)
        assert dev.calls == Counter() and host.of(Reply, verified=False) == []
        assert ep.stats.unauthenticated == 2 and ep.stats.unknown_sessions == 1
        await host.close()


@virtual_time
async def test_replayed_and_tampered_frames_are_dropped_and_counted() -> None:
    async with device() as (ep, dev, cable):
        host = RawHost(cable.host_link(), DEV, TEST_KEY)
        await host.open()
        await host.open_session()
        first = await host.send(request(10, DEV, "start"))
        await asyncio.sleep(0.05)
        assert dev.calls["start"] == 1
        await host.send(first)  # the captured bytes, as they were
        # A forged frame with a fresh counter and a valid CRC: only the tag gives it away.
        assert host.session is not None
        sealed = encode_frame(request(11, DEV, "start"), host.session.seal)
        (frame,) = FrameDecoder().feed(sealed)
        assert isinstance(frame, Frame) and frame.auth is not None
        raw = bytearray(frame.auth.signed + frame.auth.tag)
        raw[-1] ^= 0x01
        await host.send(
            encode_raw(1, 11, DEV, bytes(raw[8:-24]), flags=0, seal=lambda _r: bytes(raw[-24:]))
        )
        await host.send(request(12, DEV, "status"))  # the genuine session is unharmed
        await asyncio.sleep(0.05)
        assert dev.calls["start"] == 1 and dev.calls["status"] == 1
        assert ep.stats.replays == 1 and ep.stats.bad_tags == 1
        await host.close()


@virtual_time
async def test_one_controller_observers_read_only_and_the_same_host_takes_over() -> None:
    async with device(Bus()) as (ep, dev, cable):
        a = client(cable, host_id="exam-a")
        await a.connect()
        b = client(cable, host_id="console-b")
        with pytest.raises(ControlRefused, match="held by host exam-a"):
            await b.connect(timeout_s=0.6)
        watcher = client(cable, host_id="console-b", role=Role.OBSERVE)
        await watcher.connect()
        assert (await watcher.call("status"))["done"] == "status"
        with pytest.raises(DeviceStateError, match="needs the control lease"):
            await watcher.call("arm", {"volume_ml": 50})
        assert ep.stats.refused_not_controller == 1 and dev.calls["arm"] == 0
        await a.call("arm", {"volume_ml": 50})
        # The same host, a new session (its cable was re-plugged): its lease, no waiting.
        again = client(cable, host_id="exam-a")
        await again.connect(timeout_s=0.6)
        await again.call("start")
        assert dev.calls["start"] == 1
        await again.close()  # released: a second host may now take control at once
        b2 = client(cable, host_id="console-b")
        await b2.connect(timeout_s=0.6)
        assert not ep.safe  # a release is not a loss
        for c in (a, watcher, b2):
            await c.close()


@virtual_time
async def test_fire_once_commands_are_refused_in_safe_until_cleared() -> None:
    async with device(host_timeout_s=0.3) as (ep, dev, cable):
        host = RawHost(cable.host_link(), DEV, TEST_KEY)
        await host.open()
        await host.open_session()
        await host.send(heartbeat(1, 0))
        await asyncio.sleep(0.5)  # silent controller: lost, SAFE
        assert ep.safe and ep.stats.host_lost == 1
        c = client(cable)
        await c.connect()
        for command in ("start", "expose", "fluoro", "tomo"):
            with pytest.raises(DeviceFault) as refused:
                await c.call(command, fire_once=True)
            assert refused.value.fault == "safe_state"
        assert ep.stats.refused_in_safe == 4 and sum(dev.calls.values()) == 0
        await c.call("arm", {"volume_ml": 20})  # not fire-once: allowed, SAFE or not
        await c.call("link.clear_safe")
        await c.call("start", fire_once=True)
        assert dev.calls["start"] == 1
        await c.close()
        await host.close()


@virtual_time
async def test_forged_device_events_are_dropped_and_reported_once_per_second() -> None:
    async with device(Bus()) as (ep, _dev, cable):
        c = client(cable)
        events: list[str] = []
        reports: list[tuple[str, int]] = []
        c.subscribe(lambda name, f, t: events.append(name))
        c.on_security(lambda kind, count, detail: reports.append((kind, count)))
        await c.connect()
        forger = cable.device_link  # anyone who can talk on the device's side of the medium
        for i in range(5):
            await forger.write(encode_frame(event(900 + i, DEV, "faulted", faults="air")))
            await asyncio.sleep(0.01)
        await ep.send_event("status", {"volume_ml": 1.0})
        await asyncio.sleep(1.5)
        assert events == ["status"]  # only the device's own
        assert reports == [("unauthenticated", 1), ("unauthenticated", 4)]
        assert c.security.unauthenticated == 5
        await c.close()


@virtual_time
async def test_a_device_with_another_key_fails_at_once_with_the_reason() -> None:
    async with device() as (_ep, _dev, cable):
        c = client(cable, key=RoomKey(bytes(32)))
        with pytest.raises(AuthenticationFailed, match="could not prove"):
            await c.connect(timeout_s=3.0)


@virtual_time
async def test_a_version_1_device_is_named_as_such() -> None:
    cable = MemoryCable()
    dev_link = cable.device_link
    await dev_link.open()

    async def old_device() -> None:
        n = 0
        while True:  # version-1 heartbeats, as an old firmware sends
            n += 1
            payload = bytes([1, 0, 200, 0, 0, 0, n])
            with contextlib.suppress(LinkError):  # no host on the cable yet
                await dev_link.write(encode_raw(6, n, DEV, payload, version=1))
            await asyncio.sleep(0.2)

    task = asyncio.create_task(old_device())
    try:
        c = client(cable)
        with pytest.raises(ProtocolMismatch, match="version 1"):
            await c.connect(timeout_s=3.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
