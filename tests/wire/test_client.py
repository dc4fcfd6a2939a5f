"""WireClient against DeviceEndpoint: over the in-memory cable and over a real pty.

Each test asserts what could go wrong: the device handler's execution count (retries answered
from the reply cache, fire-once never re-sent), timings of loss detection and reconnection, and
data integrity of bulk transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from drivers.clock import Clock, ScaledTimeEventLoop
from drivers.errors import (
    AmbiguousCommand,
    CommandRejected,
    DeviceBusy,
    DeviceError,
    DeviceFault,
    DeviceLost,
    DeviceStateError,
    DeviceTimeout,
)
from drivers.links import Link
from drivers.links.memory import MemoryCable
from drivers.wire import (
    FastDecoder,
    Frame,
    FrameDecoder,
    MsgType,
    NodeState,
    Reply,
    Request,
    Scalar,
    Status,
    WireClient,
    encode_frame,
    encode_reply,
    encode_request,
)
from hardware_sim.wire import DeviceEndpoint, FdLink
from tests.keys import TEST_KEY
from tests.virtual_time import virtual_time
from tests.wire.raw import RawDevice


class FakeDevice:
    """A scripted device: counts handler calls per command."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.scale = 1.0

    async def handle(
        self, command: str, f: Mapping[str, Scalar]
    ) -> tuple[Status, Mapping[str, Scalar]]:
        self.calls[command] += 1
        if command in ("status", "set", "start"):
            return Status.OK, {"state": "idle", **f}
        if command == "echo":
            return Status.OK, dict(f)
        if command == "slow":
            await asyncio.sleep(float(f["wall_s"] or 0) * self.scale)
            return Status.OK, {}
        if command == "bad_state":
            return Status.BAD_STATE, {"message": "not armed"}
        if command == "fault":
            return Status.FAULT, {"fault": "over_pressure", "message": "2100 kPa"}
        if command == "interlock":
            return Status.INTERLOCK, {"message": "door open"}
        if command == "busy":
            return Status.BUSY, {"message": "warming up"}
        if command == "bad_arg":
            return Status.BAD_ARG, {"message": "volume_ml missing"}
        return Status.UNKNOWN_COMMAND, {"message": f"no {command}"}


def _now() -> float:
    return asyncio.get_running_loop().time()


class Rig:
    def __init__(self, client: WireClient, endpoint: DeviceEndpoint, device: FakeDevice) -> None:
        self.client = client
        self.endpoint = endpoint
        self.device = device
        self.states: list[tuple[float, bool, str]] = []
        self.events: list[tuple[str, dict[str, Scalar], float]] = []
        self.gaps: list[tuple[int, int]] = []
        self.host_lost = 0
        client.on_link_state(lambda up, d: self.states.append((_now(), up, d)))
        client.subscribe(lambda n, f, t: self.events.append((n, dict(f), t)))
        client.on_gap(lambda first, n: self.gaps.append((first, n)))


@contextlib.asynccontextmanager
async def rig(
    cable: MemoryCable | None = None,
    *,
    link_factory: Any = None,
    device_link: Link | None = None,
    device_clock: Clock | None = None,
    client_kw: dict[str, Any] | None = None,
    endpoint_kw: dict[str, Any] | None = None,
) -> AsyncIterator[Rig]:
    cable = cable or MemoryCable()
    clock = Clock.for_running_loop()
    device = FakeDevice()
    device.scale = clock.time_scale
    r: Rig

    async def host_lost() -> None:
        r.host_lost += 1

    endpoint = DeviceEndpoint(
        device_link or cable.device_link,
        device_id=3,
        name="injector",
        handler=device.handle,
        clock=device_clock or clock,
        key=TEST_KEY,
        on_host_lost=host_lost,
        **(endpoint_kw or {}),
    )
    client = WireClient(
        link_factory or cable.host_link,
        device_id=3,
        name="injector",
        clock=clock,
        key=TEST_KEY,
        **(client_kw or {}),
    )
    r = Rig(client, endpoint, device)
    serve = asyncio.create_task(endpoint.serve())
    try:
        await client.connect(timeout_s=2.0)
        yield r
    finally:
        await client.close()
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)


QUIET = {"heartbeat_period_s": 30.0, "heartbeat_timeout_s": 60.0}  # no heartbeat in the way
QUIET_DEVICE = {"heartbeat_period_s": 30.0, "host_timeout_s": 60.0}


# --- request / reply ----------------------------------------------------------------------


@virtual_time
async def test_call_returns_reply_fields_with_device_time() -> None:
    async with rig() as r:
        reply = await r.client.call("echo", {"volume_ml": 50, "flow_ml_s": 4.5, "who": "x"})
        assert reply["volume_ml"] == 50 and reply["flow_ml_s"] == 4.5 and reply["who"] == "x"
        assert isinstance(reply["t_s"], float)
        assert r.device.calls["echo"] == 1
        assert r.client.is_up and r.client.device_state is NodeState.READY
        assert r.states and r.states[0][1] is True


@virtual_time
async def test_many_outstanding_calls_are_matched_by_seq() -> None:
    async with rig() as r:
        replies = await asyncio.gather(*(r.client.call("echo", {"i": i}) for i in range(40)))
        assert [rep["i"] for rep in replies] == list(range(40))
        assert r.device.calls["echo"] == 40


@virtual_time
async def test_replies_out_of_order_reach_the_right_caller() -> None:
    """A hand-written device answers two requests in reverse order."""
    cable = MemoryCable()
    dev = cable.device_link
    await dev.open()
    clock = Clock.for_running_loop()
    client = WireClient(
        cable.host_link, device_id=3, name="inj", clock=clock, key=TEST_KEY, sync_clock=False
    )

    async def device() -> None:
        decoder = FrameDecoder()
        raw = RawDevice(dev, 3, TEST_KEY)
        requests: list[Frame] = []
        while len(requests) < 2:
            data = await dev.read()
            for item in decoder.feed(data):
                if (
                    isinstance(item, Frame)
                    and isinstance(item.message, Request)
                    and not await raw.handshake(item)
                ):
                    requests.append(item)
        for req in reversed(requests):
            assert isinstance(req.message, Request)
            out = {"got": req.message.args["n"]}
            await raw.send(Frame(req.seq, 3, Reply(Status.OK, out)))

    task = asyncio.create_task(device())
    try:
        await client.connect(timeout_s=1.0)
        a, b = await asyncio.gather(client.call("q", {"n": 1}), client.call("q", {"n": 2}))
        assert (a["got"], b["got"]) == (1, 2)
    finally:
        await client.close()
        await task


@virtual_time
async def test_status_codes_map_to_typed_errors() -> None:
    async with rig() as r:
        c = r.client
        with pytest.raises(DeviceStateError, match="not armed") as st:
            await c.call("bad_state")
        assert st.value.device == "injector" and st.value.link == "memory://cable"
        with pytest.raises(DeviceFault) as fault:
            await c.call("fault")
        assert fault.value.fault == "over_pressure" and "2100 kPa" in str(fault.value)
        with pytest.raises(DeviceFault, match="door open") as inter:
            await c.call("interlock")
        assert inter.value.fault == "interlock"
        with pytest.raises(DeviceBusy, match="warming up"):
            await c.call("busy")
        with pytest.raises(CommandRejected, match="volume_ml missing") as bad:
            await c.call("bad_arg")
        assert bad.value.status == "BAD_ARG" and isinstance(bad.value, DeviceError)
        with pytest.raises(CommandRejected) as unknown:
            await c.call("nope")
        assert unknown.value.status == "UNKNOWN_COMMAND"


# --- retries, fire-once, NAK -------------------------------------------------------------


@virtual_time
async def test_lost_reply_is_retried_with_same_seq_and_answered_from_cache() -> None:
    async with rig(client_kw={"reply_timeout_s": 0.05}) as r:
        r.endpoint.drop_next_replies(1)
        reply = await r.client.call("set", {"position_mm": 120.0})
        assert reply["position_mm"] == 120.0
        assert r.device.calls["set"] == 1  # executed once, the retry hit the cache
        assert r.endpoint.stats.cache_hits == 1
        assert r.client.stats.retries == 1 and r.client.stats.timeouts == 1


@virtual_time
async def test_idempotent_call_gives_up_after_three_retries() -> None:
    async with rig(client_kw={"reply_timeout_s": 0.03}) as r:
        r.endpoint.drop_next_replies(10)
        with pytest.raises(DeviceTimeout, match="4 attempts") as exc:
            await r.client.call("status")
        assert not isinstance(exc.value, AmbiguousCommand)
        assert r.device.calls["status"] == 1
        assert r.endpoint.stats.cache_hits == 3  # the 3 re-sends: same seq, not executed


@virtual_time
async def test_fire_once_is_never_resent_on_timeout() -> None:
    async with rig(client_kw={"reply_timeout_s": 0.05}) as r:
        r.endpoint.drop_next_replies(1)
        requests_before = r.endpoint.stats.requests
        with pytest.raises(AmbiguousCommand) as exc:
            await r.client.call("start", fire_once=True)
        assert exc.value.cause == "timeout"
        await asyncio.sleep(0.15)  # a late re-send would show up here
        assert r.device.calls["start"] == 1
        assert r.endpoint.stats.requests - requests_before == 1
        assert r.client.stats.retries == 0


@virtual_time
async def test_crc_damaged_request_is_nakd_and_resent_at_once() -> None:
    cable = MemoryCable()
    async with rig(cable, client_kw={"reply_timeout_s": 1.0}) as r:
        cable.corrupt_next(1, to_device=True)  # the request's frame: no await in between
        t0 = _now()
        reply = await r.client.call("set", {"position_mm": 5})
        assert _now() - t0 == 0.0  # the NAK, not the 1 s timeout, triggered the re-send
        assert reply["position_mm"] == 5
        assert r.endpoint.stats.naks_sent == 1 and r.client.stats.naks_received == 1
        assert r.client.stats.retries == 1 and r.device.calls["set"] == 1


@virtual_time
async def test_fire_once_damaged_on_the_way_is_ambiguous_not_resent() -> None:
    cable = MemoryCable()
    async with rig(cable, client_kw={"reply_timeout_s": 0.1}) as r:
        cable.corrupt_next(1, to_device=True)
        with pytest.raises(AmbiguousCommand):
            await r.client.call("start", fire_once=True)
        assert r.device.calls["start"] == 0  # never arrived, never re-sent
        assert r.client.stats.naks_received == 1 and r.client.stats.retries == 0


@virtual_time
async def test_damaged_reply_is_nakd_and_resent_so_fire_once_resolves() -> None:
    async with rig(client_kw={"reply_timeout_s": 1.0}) as r:
        r.endpoint.corrupt_next_frames(1, MsgType.REPLY)
        reply = await r.client.call("start", fire_once=True)
        assert reply["state"] == "idle"
        assert r.device.calls["start"] == 1
        assert r.client.stats.naks_sent == 1 and r.endpoint.stats.replies_resent >= 1
        assert r.client.stats.retries == 0


@virtual_time
async def test_garbage_between_frames_is_skipped() -> None:
    async with rig() as r:
        for i in range(20):
            r.endpoint.inject_garbage(64 + 13 * i, seed=i)
            assert (await r.client.call("echo", {"i": i}))["i"] == i
        assert r.client.stats.garbage_bytes > 0 or r.client.stats.decode_errors > 0
        assert r.device.calls["echo"] == 20


# --- events ---------------------------------------------------------------------------------


@virtual_time
async def test_critical_event_is_acked_and_duplicates_dropped() -> None:
    cable = MemoryCable()
    async with rig(cable, client_kw=QUIET, endpoint_kw=QUIET_DEVICE) as r:
        cable.drop_next(1, to_device=True)  # the host's first ACK is lost
        await r.endpoint.send_event("table.motion_complete", {"op_id": 7}, critical=True)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if r.endpoint.pending_acks == 0:
                break
        assert r.endpoint.pending_acks == 0
        assert r.endpoint.stats.critical_resends == 1  # re-sent once, ACK'd the second time
        assert [e[0] for e in r.events] == ["table.motion_complete"]  # delivered once
        assert r.client.stats.duplicate_events == 1
        assert r.events[0][1]["op_id"] == 7


@virtual_time
async def test_event_gap_is_reported_and_late_critical_event_still_delivered() -> None:
    cable = MemoryCable()
    async with rig(cable, client_kw=QUIET, endpoint_kw=QUIET_DEVICE) as r:
        ep = r.endpoint
        await ep.send_event("injector.status", {"volume_ml": 1.0})
        cable.drop_next(1, to_device=False)
        await ep.send_event("injector.started", {"started_t_s": 1.5}, critical=True)
        await ep.send_event("injector.status", {"volume_ml": 2.0})
        await asyncio.sleep(0.01)
        first_seq = r.gaps[0][0] if r.gaps else None
        assert r.gaps == [(first_seq, 1)]
        await asyncio.sleep(0.2)  # the critical one is re-sent after 100 ms
        names = [e[0] for e in r.events]
        assert names == ["injector.status", "injector.status", "injector.started"]
        assert r.client.stats.missed_events == 1 and r.client.stats.duplicate_events == 0
        assert ep.pending_acks == 0


# --- link loss, reconnection, restart ------------------------------------------------------


@virtual_time
async def test_silence_is_detected_in_about_a_second_and_device_goes_safe() -> None:
    cable = MemoryCable()
    async with rig(cable, client_kw={"reply_timeout_s": 5.0}) as r:
        c = r.client
        cable.blackhole = True
        t0 = _now()
        idem = asyncio.create_task(c.call("status"))
        once = asyncio.create_task(c.call("start", fire_once=True))
        with pytest.raises(DeviceLost):
            await idem
        # Lost 1 s after the device's last frame, which came at most one 200 ms heartbeat
        # period before the cable went silent.
        lost_after = _now() - t0
        assert 1.0 - 0.2 <= lost_after <= 1.0
        with pytest.raises(AmbiguousCommand) as amb:
            await once
        assert amb.value.cause == "link_lost"
        assert r.states[-1][1] is False and "heartbeat lost" in r.states[-1][2]
        t1 = _now()
        with pytest.raises(DeviceLost):
            await c.call("status")
        assert _now() - t1 == 0.0  # fails at once while lost, no waiting for a reply
        await asyncio.sleep(0.3)
        assert r.host_lost == 1 and r.endpoint.state is NodeState.SAFE
        cable.blackhole = False
        for _ in range(200):  # a new session, once the handshake gets through
            await asyncio.sleep(0.01)
            if c.is_up:
                break
        assert c.is_up and c.device_state is NodeState.SAFE  # SAFE until cleared
        await c.call("link.clear_safe")
        await asyncio.sleep(0.25)
        assert c.device_state is NodeState.READY and not r.endpoint.safe
        assert r.device.calls["start"] == 0  # blackholed: never reached the device


@virtual_time
async def test_reconnects_after_the_link_drops() -> None:
    cable = MemoryCable()
    async with rig(cable) as r:
        c = r.client
        cable.cut()
        await asyncio.sleep(0.01)
        assert not c.is_up and "link dropped" in r.states[-1][2]
        with pytest.raises(DeviceLost):
            await c.call("status")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if c.is_up:
                break
        assert c.is_up and cable.host_opens == 2
        assert (await c.call("echo", {"x": 1}))["x"] == 1
        assert c.stats.restarts == 0  # same device, the link just came back


@virtual_time
async def test_reconnect_backoff_while_the_device_is_unplugged() -> None:
    cable = MemoryCable()
    opens: list[float] = []

    def factory() -> Link:
        opens.append(_now())
        return cable.host_link()

    async with rig(cable, link_factory=factory) as r:
        cable.refuse_open = True
        cut = _now()
        cable.cut()
        await asyncio.sleep(0.5)
        cable.refuse_open = False
        for _ in range(150):
            await asyncio.sleep(0.01)
            if r.client.is_up:
                break
        assert r.client.is_up
        # 50 ms, 100 ms, 200 ms, 400 ms after each refused open: doubling, not hammering the
        # port; the open after the device is back (at 0.5 s) succeeds.
        waits = [b - a for a, b in itertools.pairwise([cut, *opens[1:]])]
        assert waits == pytest.approx([0.05, 0.1, 0.2, 0.4], abs=1e-9), opens


@virtual_time
async def test_device_restart_is_detected_from_uptime() -> None:
    cable = MemoryCable()
    async with rig(cable) as r:
        await asyncio.sleep(0.45)  # let the device's uptime grow past the slack
        serve = r.endpoint._serve_task
        assert serve is not None
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)
        fresh = DeviceEndpoint(
            cable.device_link,
            device_id=3,
            name="injector",
            handler=r.device.handle,
            clock=Clock.for_running_loop(),
            key=TEST_KEY,
        )
        task = asyncio.create_task(fresh.serve())
        try:
            # The fresh device knows no session: silence, then a new session, whose first
            # heartbeat shows the uptime went back.
            for _ in range(300):
                await asyncio.sleep(0.01)
                if r.client.stats.restarts:
                    break
            assert r.client.stats.restarts == 1
            assert "heartbeat lost" in [s for s in r.states if not s[1]][-1][2]
            assert r.states[-1][1] is True and "restarted" in r.states[-1][2]
            assert r.client.is_up
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@virtual_time
async def test_restart_during_an_outage_is_told_with_the_link_coming_back() -> None:
    cable = MemoryCable()
    async with rig(cable) as r:
        await asyncio.sleep(0.45)
        serve = r.endpoint._serve_task
        assert serve is not None
        cable.cut()
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)
        fresh = DeviceEndpoint(
            cable.device_link,
            device_id=3,
            name="injector",
            handler=r.device.handle,
            clock=Clock.for_running_loop(),
            key=TEST_KEY,
        )
        task = asyncio.create_task(fresh.serve())
        try:
            for _ in range(100):
                await asyncio.sleep(0.01)
                if r.client.is_up:
                    break
            assert r.client.stats.restarts == 1
            assert r.states[-1][1] is True and "restarted" in r.states[-1][2]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@virtual_time
async def test_connect_fails_with_the_reason() -> None:
    cable = MemoryCable()
    cable.refuse_open = True
    client = WireClient(
        cable.host_link, device_id=2, name="table", clock=Clock.for_running_loop(), key=TEST_KEY
    )
    with pytest.raises(DeviceLost, match="cannot open link"):
        await client.connect(timeout_s=0.2)
    with pytest.raises(DeviceLost):
        await client.call("status")


# --- bulk -----------------------------------------------------------------------------------


@virtual_time
async def test_bulk_with_dropped_chunks_is_recovered_by_bulk_resend() -> None:
    async with rig(client_kw={"bulk_idle_s": 0.05}) as r:
        image = os.urandom(100_000)
        r.endpoint.drop_bulk_chunks(2, 3, 7)
        tid = await r.endpoint.send_bulk(image, chunk_size=8192)
        assert await r.client.bulk(tid, timeout_s=2.0) == image
        assert r.client.stats.bulk_resend_requests == 2  # runs 2-3 and 7
        assert r.endpoint.stats.bulk_chunks_resent == 3


@virtual_time
async def test_bulk_before_and_after_the_data() -> None:
    async with rig() as r:
        early = asyncio.create_task(r.client.bulk(0, timeout_s=2.0))  # announced, not yet sent
        await asyncio.sleep(0.01)
        first = b"\x7e\x7d\x7f" * 10_000
        assert await r.endpoint.send_bulk(first) == 0
        assert await early == first
        second = bytes(range(256)) * 50
        tid = await r.endpoint.send_bulk(second)
        await asyncio.sleep(0.01)
        assert await r.client.bulk(tid, timeout_s=0.5) == second  # already complete
        assert r.client.stats.bulk_resend_requests == 0
        with pytest.raises(DeviceTimeout, match="no chunk"):
            await r.client.bulk(999, timeout_s=0.3)


# --- time -----------------------------------------------------------------------------------


class ShiftedClock(Clock):
    """A device whose clock reads 1000 s ahead of the host's."""

    def now(self) -> float:
        return super().now() + 1000.0


@virtual_time
async def test_device_times_map_onto_the_host_clock() -> None:
    loop = asyncio.get_running_loop()
    async with rig(device_clock=ShiftedClock(loop)) as r:
        c = r.client
        assert c.clock_uncertainty_s < 0.01  # connect's link.ping exchanges
        sent = loop.time()
        reply = await c.call("status")
        received = loop.time()
        t = reply["t_s"]
        assert isinstance(t, float) and t > 900
        mapped = c.to_host_time(t)
        slack = c.clock_uncertainty_s + 1e-4
        assert sent - slack <= mapped <= received + slack
        await r.endpoint.send_event("injector.status", {"volume_ml": 3.0})
        await asyncio.sleep(0.01)
        _, _, host_t = r.events[-1]
        assert loop.time() - 0.05 <= host_t <= loop.time()


def test_scaled_loop_60x_keeps_wall_clock_link_timing() -> None:
    """At 60x, 250 ms wall is 15 loop seconds: a reply after 60 ms wall is in time, and
    heartbeats every 200 ms wall keep the link up (unscaled bounds would fire at once)."""
    loop = ScaledTimeEventLoop(60.0)

    async def scenario() -> tuple[int, int, bool, float]:
        async with rig() as r:
            assert Clock.for_running_loop().time_scale == 60.0
            await r.client.call("slow", {"wall_s": 0.06})
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.6:  # 36 loop seconds
                await r.client.call("status")
                await asyncio.sleep(0.05 * 60)
            ups = [s[1] for s in r.states]
            return (
                r.client.stats.timeouts,
                r.client.stats.retries,
                all(ups),
                r.client.stats.requests,
            )
        raise AssertionError("unreachable")

    try:
        timeouts, retries, always_up, requests = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert (timeouts, retries, always_up) == (0, 0, True)
    assert requests >= 10


@virtual_time
async def test_virtual_time_loop_over_the_memory_cable() -> None:
    """In-process simulation on virtual time: an idle minute of loop time, with heartbeats
    flowing both ways, and the link is still up afterwards, the device never lost its host.
    (That virtual time costs no wall time is tests/unit/test_clock.py's concern.)"""
    async with rig() as r:
        t0 = _now()
        await asyncio.sleep(60.0)
        reply = await r.client.call("echo", {"n": 1})
        assert reply["n"] == 1
        assert _now() - t0 == pytest.approx(60.0, abs=1e-9)
        assert r.client.is_up and r.client.stats.restarts == 0 and r.client.stats.timeouts == 0
        assert r.host_lost == 0 and not r.endpoint.safe


# --- over a real pty ------------------------------------------------------------------------


@pytest.fixture
def pty_pair() -> Any:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    yield master, path
    os.close(slave)
    with contextlib.suppress(OSError):
        os.close(master)


@pytest.mark.asyncio
async def test_over_a_pty_through_the_serial_link(pty_pair: tuple[int, str]) -> None:
    from drivers.links import open_link

    master, path = pty_pair
    device_link = FdLink(master, f"pty://{path}")
    async with rig(
        link_factory=lambda: open_link(f"serial://{path}"), device_link=device_link
    ) as r:
        c = r.client
        replies = await asyncio.gather(*(c.call("echo", {"i": i}) for i in range(20)))
        assert [rep["i"] for rep in replies] == list(range(20))
        r.endpoint.inject_garbage(300, seed=5)
        assert (await c.call("echo", {"after": "noise"}))["after"] == "noise"
        image = os.urandom(300_000)
        tid = await r.endpoint.send_bulk(image)
        assert await c.bulk(tid, timeout_s=3.0) == image
        await r.endpoint.send_event("table.motion_complete", {"op_id": 1}, critical=True)
        await asyncio.sleep(0.05)
        assert [e[0] for e in r.events] == ["table.motion_complete"]
        assert r.endpoint.pending_acks == 0
        assert c.link_url == f"serial://{path}"


@pytest.mark.asyncio
async def test_over_a_pty_retry_and_fire_once(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    slave = os.open(path, os.O_RDWR | os.O_NOCTTY)
    import tty

    tty.setraw(slave)
    device_link = FdLink(master, f"pty://{path}")
    async with rig(
        link_factory=lambda: FdLink(slave, f"fd://{path}"),
        device_link=device_link,
        client_kw={"reply_timeout_s": 0.05},
    ) as r:
        r.endpoint.drop_next_replies(1)
        assert (await r.client.call("set", {"v": 1}))["v"] == 1
        r.endpoint.drop_next_replies(1)
        with pytest.raises(AmbiguousCommand):
            await r.client.call("start", fire_once=True)
        assert r.device.calls == Counter({"set": 1, "start": 1})
        assert r.endpoint.stats.cache_hits == 1
    os.close(slave)


# --- the hot-path codec shortcuts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        ("status", {}),
        ("arm", {"volume_ml": 50}),  # the protocol document's example: stuffed seq and brace
        ("set_technique", {"kvp": 75.0, "mas": 0.2, "focal": "small", "x": None, "ok": True}),
        ("name}~\x7f", {}),
    ],
)
def test_fast_encoders_match_encode_frame(command: str, fields: dict[str, Scalar]) -> None:
    if not command.isidentifier():
        with pytest.raises(ValueError):
            encode_request(1, 2, command, fields)
        return
    for seq in (0, 126, 0x7D7E, 0xFFFF):
        assert encode_request(seq, 2, command, fields) == encode_frame(
            Frame(seq, 2, Request(command, fields))
        )
        for status in Status:
            assert encode_reply(seq, 255, status, fields) == encode_frame(
                Frame(seq, 255, Reply(status, fields))
            )
    with pytest.raises(ValueError):
        encode_request(1, 2, command, {"bad": float("nan")})


def test_fast_decoder_matches_frame_decoder_on_any_split() -> None:
    rng = random.Random(3)
    frames = [
        encode_frame(Frame(i, 3, Reply(Status.OK, {"t_s": i * 0.1, "s": "\x7e\x7d"})))
        for i in range(30)
    ]
    frames[7] = frames[7][:10] + bytes((frames[7][10] ^ 1,)) + frames[7][11:]  # CRC error
    stream = b"noise" + b"".join(frames) + b"\x7e\x01\x02" + frames[0]  # truncated frame
    for trial in range(50):
        cuts = sorted(rng.sample(range(1, len(stream)), trial % 20))
        if trial % 3 == 0:  # whole frames per read: the shortcut's case
            cuts = list(itertools.accumulate(len(f) for f in [b"noise", *frames]))
        pieces = [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]
        slow, fast = FrameDecoder(), FastDecoder()
        assert [x for p in pieces for x in fast.feed(p)] == [
            x for p in pieces for x in slow.feed(p)
        ]
