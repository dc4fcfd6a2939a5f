"""DeviceEndpoint against a hand-driven host (raw frames over the in-memory cable).

On virtual time (``@virtual_time``): both ends live in the loop, so timings (heartbeat
spacing, re-send intervals, the host-loss bound) are asserted exactly, not within a margin
for a busy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from drivers.clock import Clock
from drivers.links.memory import MemoryCable
from drivers.wire import (
    Ack,
    BulkAssembler,
    BulkChunk,
    BulkComplete,
    Event,
    Flags,
    Frame,
    FrameError,
    Heartbeat,
    MsgType,
    Nak,
    NodeState,
    Reply,
    Scalar,
    Status,
    ack,
    encode_frame,
    encode_raw,
    heartbeat,
    nak,
    request,
)
from hardware_sim.wire import DeviceEndpoint
from hardware_sim.wire import endpoint as endpoint_module
from tests.keys import TEST_KEY
from tests.virtual_time import virtual_time
from tests.wire.raw import RawHost

DEV = 4


class Device:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.host_lost = 0
        self.lost_at: list[float] = []  # loop times of on_host_lost

    async def handle(
        self, command: str, f: Mapping[str, Scalar]
    ) -> tuple[Status, Mapping[str, Scalar]]:
        self.calls[command] += 1
        if command == "boom":
            raise RuntimeError("motor driver overheated")
        return Status.OK, {"echo": command, **f}

    async def lost(self) -> None:
        self.host_lost += 1
        self.lost_at.append(asyncio.get_running_loop().time())


@contextlib.asynccontextmanager
async def endpoint(
    session: bool = True, **kw: Any
) -> AsyncIterator[tuple[DeviceEndpoint, RawHost, Device, MemoryCable]]:
    cable = MemoryCable()
    device = Device()
    ep = DeviceEndpoint(
        cable.device_link,
        device_id=DEV,
        name="detector",
        handler=device.handle,
        clock=Clock.for_running_loop(),
        key=TEST_KEY,
        on_host_lost=device.lost,
        **kw,
    )
    serve = asyncio.create_task(ep.serve())
    host = RawHost(cable.host_link(), DEV, TEST_KEY)
    await host.open()
    await asyncio.sleep(0.01)  # serve() has opened the device's port
    if session:
        reply = await host.open_session()
        assert reply.status is Status.OK, reply
    try:
        yield ep, host, device, cable
    finally:
        await host.close()
        await ep.close()
        await asyncio.gather(serve, return_exceptions=True)


@virtual_time
async def test_replies_carry_device_time_and_heartbeats_state_and_uptime() -> None:
    async with endpoint() as (ep, host, _device, _):
        reply = await host.call(10, "arm", volume_ml=50)
        assert reply.status is Status.OK and reply.fields["volume_ml"] == 50
        assert isinstance(reply.fields["t_s"], float)
        await host.wait_for(lambda: len(host.of(Heartbeat)) >= 2, within=1.0)
        beats = host.of(Heartbeat)
        assert all(f.device == DEV for f in beats)
        first, second = (f.message for f in beats[:2])
        assert isinstance(first, Heartbeat) and isinstance(second, Heartbeat)
        assert first.state is NodeState.READY and first.period_ms == 200
        assert abs(second.uptime_ms - first.uptime_ms - 200) <= 1  # whole ms, truncated
        ep.set_state(NodeState.ACTIVE)
        await host.wait_for(lambda: len(host.of(Heartbeat)) >= 3, within=1.0)
        last = host.of(Heartbeat)[-1].message
        assert isinstance(last, Heartbeat) and last.state is NodeState.ACTIVE


@virtual_time
async def test_reply_cache_answers_repeats_without_executing() -> None:
    async with endpoint() as (ep, host, device, _):
        a = await host.call(100, "move", position_mm=10)
        b = await host.call(100, "move", position_mm=10)  # a re-send
        assert device.calls["move"] == 1 and a == b
        await host.call(100, "move", position_mm=20)  # same seq, different request: new
        assert device.calls["move"] == 2
        for seq in range(101, 101 + 32):  # push seq 100 out of the 32-entry cache
            await host.call(seq, "status")
        await host.call(100, "move", position_mm=20)
        assert device.calls["move"] == 3
        assert ep.stats.cache_hits == 1


@virtual_time
async def test_damaged_frames_are_nakd_at_most_every_20_ms() -> None:
    async with endpoint() as (_ep, host, device, cable):
        good = encode_frame(request(1, DEV, "status"))
        cable.corrupt_next(5)
        for _ in range(5):
            await host.send(good)
        await asyncio.sleep(0.01)
        naks = host.of(Nak)
        assert len(naks) == 1
        assert naks[0].seq == 0 and naks[0].device == 0
        assert naks[0].message == Nak(FrameError.CRC, None)
        await asyncio.sleep(0.02)
        cable.corrupt_next(1)
        await host.send(good)
        await host.wait_for(lambda: len(host.of(Nak)) == 2)
        assert device.calls["status"] == 0  # damaged requests are never acted on


@virtual_time
async def test_no_nak_for_garbage_or_damaged_ack_and_nak_frames() -> None:
    async with endpoint() as (ep, host, _device, _):
        await host.send(b"\x00\x01line noise\x02" * 20)
        await asyncio.sleep(0.025)
        await host.send(encode_raw(MsgType.ACK, 5, DEV, b"\x05\x05"))  # ACK must be 1 byte
        await asyncio.sleep(0.025)
        await host.send(encode_raw(MsgType.NAK, 5, DEV, b"\x01"))  # NAK must be 2 bytes
        await asyncio.sleep(0.025)
        assert host.of(Nak) == []
        assert ep.stats.garbage_bytes > 0 and ep.stats.decode_errors == 2
        bad_json = bytes((6,)) + b"status" + b"{not json"
        await host.send(encode_raw(MsgType.REQUEST, 77, DEV, bad_json))
        await host.wait_for(lambda: host.of(Nak))
        f = host.of(Nak)[0]
        assert (f.seq, f.device) == (77, DEV)
        assert f.message == Nak(FrameError.BAD_PAYLOAD, MsgType.REQUEST)


@virtual_time
async def test_host_lost_enters_safe_until_cleared() -> None:
    async with endpoint(session=False, host_timeout_s=0.3) as (ep, host, device, _):
        await host.send(heartbeat(1, 0))  # plain frames make nobody the controller
        await asyncio.sleep(0.4)
        assert device.host_lost == 0 and not ep.safe  # no host yet: nothing to lose
        assert not ep.host_connected and ep.stats.unauthenticated == 1
        await host.open_session()
        sent = asyncio.get_running_loop().time()
        await host.send(heartbeat(1, 0))
        assert await host.wait_for(lambda: ep.host_connected)  # the controller is now known
        await host.wait_for(lambda: device.host_lost == 1, within=1.0)
        assert device.lost_at[0] - sent == pytest.approx(0.3, abs=1e-9)  # silent for 0.3 s
        assert not ep.host_connected and ep.state is NodeState.SAFE
        beats = len(host.of(Heartbeat))
        await asyncio.sleep(0.25)
        assert len(host.of(Heartbeat)) == beats  # the lost host's session ended with it
        reply = await host.open_session()  # the host comes back: a new session
        assert reply.fields["state"] == "SAFE"
        await asyncio.sleep(0.25)
        last = host.of(Heartbeat)[-1].message
        assert isinstance(last, Heartbeat) and last.state is NodeState.SAFE
        reply = await host.call(2, "link.clear_safe")
        assert reply.status is Status.OK and reply.fields["state"] == "READY"
        assert not ep.safe and device.calls == Counter()  # link.* never reach the handler


@virtual_time
async def test_critical_event_is_resent_every_100_ms_until_acked() -> None:
    async with endpoint(heartbeat_period_s=10.0) as (ep, host, _device, _):
        await ep.send_event("fault", {"code": "E12", "message": "occlusion"}, critical=True)
        await host.wait_for(lambda: len(host.of(Event)) >= 3, within=1.0)
        copies = host.of(Event)
        assert len({f.seq for f in copies}) == 1 and all(
            f.flags & Flags.ACK_REQUESTED for f in copies
        )
        times = [t for t, f, _ in host.frames if isinstance(f.message, Event)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps == pytest.approx([0.1] * len(gaps), abs=1e-9)  # every 100 ms
        assert copies[0].message == copies[-1].message  # same t_s: the same event
        await host.send(ack(copies[0].seq, DEV, MsgType.EVENT))
        await asyncio.sleep(0.25)
        assert len(host.of(Event)) == len(copies)  # no more after the ACK
        assert ep.pending_acks == 0 and ep.stats.critical_unacked == 0


@virtual_time
async def test_unacked_critical_event_gives_up_after_ten_resends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(endpoint_module, "CRITICAL_RESEND_S", 0.005)
    async with endpoint(heartbeat_period_s=10.0) as (ep, host, _device, _):
        await ep.send_event("op.done", {"op_id": 3}, critical=True)
        await host.wait_for(lambda: ep.stats.critical_unacked == 1, within=1.0)
        await asyncio.sleep(0.02)
        assert len(host.of(Event)) == 11  # first send + 10 re-sends
        assert ep.pending_acks == 0


@virtual_time
async def test_nak_of_a_reply_gets_it_resent_from_the_cache() -> None:
    async with endpoint() as (ep, host, device, _):
        await host.call(9, "status")
        await host.send(nak(9, DEV, FrameError.CRC, MsgType.REPLY))
        await host.wait_for(lambda: len([f for f in host.of(Reply) if f.seq == 9]) == 2)
        assert device.calls["status"] == 1 and ep.stats.replies_resent == 1


@virtual_time
async def test_bulk_resend_after_the_reply_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    async with endpoint() as (ep, host, _device, _):
        data = bytes(range(256)) * 400
        ep.drop_bulk_chunks(1)
        tid = await ep.send_bulk(data, chunk_size=30_000)
        await host.wait_for(lambda: len(host.of(BulkChunk)) == 3)
        assert sorted(f.message.index for f in host.of(BulkChunk)) == [0, 2, 3]  # type: ignore[union-attr]
        n_before = len(host.frames)
        reply = await host.call(5, "link.bulk_resend", transfer_id=tid, first=1, count=1)
        assert reply.status is Status.OK and reply.fields["chunks"] == 1
        await host.wait_for(lambda: len(host.of(BulkChunk)) == 4)
        after = [
            f for _, f, _ in host.frames[n_before:] if f.msg_type in (MsgType.REPLY, MsgType.BULK)
        ]
        assert [f.msg_type for f in after] == [MsgType.REPLY, MsgType.BULK]  # reply first
        asm = BulkAssembler()
        results = [asm.add(f, 0.0) for f in host.of(BulkChunk)]
        assert BulkComplete(DEV, tid, data) in results
        unknown = await host.call(6, "link.bulk_resend", transfer_id=tid + 1, first=0, count=9)
        assert unknown.status is Status.BAD_ARG and "unknown" in str(unknown.fields["message"])
        monkeypatch.setattr(endpoint_module, "BULK_KEEP_S", 0.0)
        await ep.send_bulk(b"x")  # kept for 0 s: gone at the next heartbeat
        await asyncio.sleep(0.25)
        gone = await host.call(7, "link.bulk_resend", transfer_id=tid + 1, first=0, count=1)
        assert gone.status is Status.BAD_ARG


@virtual_time
async def test_device_keeps_serving_after_the_host_drops_the_link() -> None:
    async with endpoint() as (ep, host, device, cable):
        await host.call(1, "status")
        cable.cut()
        again = RawHost(cable.host_link(), DEV, TEST_KEY)
        again.host_id = host.host_id  # the same host, back: it takes its own lease over
        await again.open()
        try:
            assert (await again.open_session()).status is Status.OK
            reply = await again.call(12, "link.clear_safe")
            assert reply.status is Status.OK
            assert ep.stats.link_drops == 1 and device.calls["status"] == 1
            assert (await again.call(13, "status")).status is Status.OK
            assert device.calls["status"] == 2
        finally:
            await again.close()


@virtual_time
async def test_stall_freezes_the_device() -> None:
    async with endpoint() as (ep, host, device, _):
        await host.call(1, "status")
        ep.stall()
        await asyncio.sleep(0.01)
        n = len(host.frames)
        await host.send(request(2, DEV, "status"))
        await asyncio.sleep(0.45)
        assert len(host.frames) == n and device.calls["status"] == 1  # no heartbeat, no reply
        ep.stall(False)
        assert (await host.call(3, "status")).status is Status.OK
        await host.wait_for(
            lambda: (
                len(host.of(Heartbeat))
                > len([1 for _, f, _ in host.frames[:n] if isinstance(f.message, Heartbeat)])
            )
        )


@virtual_time
async def test_handler_exception_becomes_a_fault_reply() -> None:
    async with endpoint() as (_ep, host, _device, _):
        reply = await host.call(1, "boom")
        assert reply.status is Status.FAULT and "overheated" in str(reply.fields["message"])
        assert (await host.call(2, "status")).status is Status.OK
        assert (await host.call(3, "link.nope")).status is Status.UNKNOWN_COMMAND


@virtual_time
async def test_ack_of_unknown_event_and_requests_for_other_devices_are_ignored() -> None:
    async with endpoint() as (_ep, host, device, _):
        replies = len(host.of(Reply))
        await host.send(Frame(3, DEV, Ack(MsgType.EVENT)))
        await host.send(request(4, DEV + 1, "status"))
        await asyncio.sleep(0.02)
        assert device.calls["status"] == 0 and len(host.of(Reply)) == replies
        assert isinstance((await host.call(5, "status")), Reply)
