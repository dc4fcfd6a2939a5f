"""Tried as an attacker on the same host would, against `fluoroctl sim serve` (issue 12).

Each test plays one attack on the simulated room's real links and checks that the device
refused it (nothing irradiated, nothing injected), that the host saw it where it can, and that
the honest exam's record stays true. The room key is the one sim serve provisioned in
``run/sim-serve/room.key``; the attacker here has the same user id as the room (the device
ports are 0600, which stops other users before the session layer is even reached).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import tty
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers import Technique
from drivers.clock import Clock
from drivers.errors import ControlRefused, DeviceFault, DeviceStateError
from drivers.links import Link, open_link
from drivers.links._mqtt_url import link_on_broker
from drivers.remote._fields import technique_fields
from drivers.wire import (
    Frame,
    FrameDecoder,
    Reply,
    Request,
    encode_frame,
    encode_raw,
    event,
    request,
)
from drivers.wire.client import WireClient
from drivers.wire.keys import RoomKey, load_key_file
from drivers.wire.session import Role, Session
from tests.e2e.conftest import LINKS_ROOM, ROOT, SimServe, cli

pytestmark = pytest.mark.links

CARM_ID = 1
INJECTOR_ID = 3
HOT = Technique(150.0, 1000.0, 100.0)  # 100 mAs at 150 kV: the exposure of issue 12
TECHNIQUE = technique_fields(Technique(75.0, 400.0, 50.0))


def room_key() -> RoomKey:
    return load_key_file(ROOT / "run/sim-serve/room.key")


def carm_url(serve: SimServe) -> str:
    return f"serial://{serve.info['links']['carm']}?baudrate=115200"


class Recording:
    """A link wrapper keeping every byte string the host wrote (what a wiretap would see)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.written: list[bytes] = []

    def __call__(self) -> Link:
        link = open_link(self.url)
        write = link.write

        async def tapped(data: bytes) -> None:
            self.written.append(bytes(data))
            await write(data)

        link.write = tapped  # type: ignore[method-assign]
        return link


@asynccontextmanager
async def session(
    url: str,
    device_id: int,
    name: str,
    *,
    host_id: str | None = None,
    role: Role = Role.CONTROL,
    factory: Callable[[], Link] | None = None,
) -> AsyncIterator[WireClient]:
    """An authenticated host session with one of the room's devices (the room's key)."""
    client = WireClient(
        factory or (lambda: open_link(url)),
        device_id=device_id,
        name=name,
        clock=Clock.for_running_loop(),
        key=room_key(),
        role=role,
        host_id=host_id,
    )
    await client.connect(timeout_s=3.0)
    try:
        yield client
    finally:
        await client.close()


def controller(
    serve: SimServe, *, host_id: str | None = None, factory: Callable[[], Link] | None = None
) -> AbstractAsyncContextManager[WireClient]:
    """The C-arm over its serial port (a pty)."""
    return session(carm_url(serve), CARM_ID, "carm", host_id=host_id, factory=factory)


async def dap(client: WireClient) -> float:
    value = (await client.call("status"))["cumulative_dap_gy_cm2"]
    assert isinstance(value, float | int)
    return float(value)


def pty_writer(serve: SimServe) -> int:
    """Open the C-arm's port as a second process would (raw, non-blocking)."""
    fd = os.open(serve.info["links"]["carm"], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd


def replies_within(fd: int, seconds: float) -> list[Frame]:
    decoder, out = FrameDecoder(), []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            out += [f for f in decoder.feed(data) if isinstance(f, Frame)]
    return [f for f in out if isinstance(f.message, Reply)]


def test_raw_frames_on_the_carm_port_fire_nothing(sim_serve: Any) -> None:
    serve = sim_serve()
    stranger = Session(1, Role.CONTROL, "x", k_out=os.urandom(32), k_in=os.urandom(32))
    attack = [
        encode_frame(Frame(1, CARM_ID, Request("set_technique", technique_fields(HOT)))),
        encode_frame(request(2, CARM_ID, "expose", op_id=7)),
        encode_raw(1, 3, CARM_ID, b"\x06expose" + b'{"op_id":8}', version=1),  # an old host
        encode_frame(request(4, CARM_ID, "expose", op_id=9), stranger.seal),  # a made-up key
        encode_frame(request(5, CARM_ID, "link.clear_safe"), stranger.seal),
    ]
    fd = pty_writer(serve)
    try:
        os.write(fd, b"".join(attack))
        answered = replies_within(fd, 1.0)
    finally:
        os.close(fd)
    assert answered == []  # not even a refusal: frames outside a session are not read

    async def check() -> None:
        async with controller(serve) as honest:
            status = await honest.call("status")
            assert status["has_technique"] is False  # the forged technique never landed
            assert await dap(honest) == 0.0

    asyncio.run(check())


def test_a_captured_frame_replayed_is_dropped(sim_serve: Any) -> None:
    serve = sim_serve()
    tap = Recording(carm_url(serve))

    async def scenario() -> None:
        async with controller(serve, factory=tap) as honest:
            await honest.call("set_technique", TECHNIQUE)
            await honest.call("beam_off")
            before = await dap(honest)
            # What a wiretap keeps: the session's sealed frames (the two handshake requests
            # are plain and answered to anyone; replaying them opens nothing, §7.2).
            captured = [w for w in tap.written if _sealed(w)]
            assert len(captured) >= 3
            fd = pty_writer(serve)
            try:
                os.write(fd, b"".join(captured))  # while the session is live: replays
                await asyncio.sleep(0.5)
                assert replies_within(fd, 0.2) == []
            finally:
                os.close(fd)
            assert await dap(honest) == before and honest.is_up
            # The honest session is unharmed: its counters moved on, the replays were stale.
            assert (await honest.call("status"))["kv"] == TECHNIQUE["kv"]
        # After the session ended its frames name a session the device no longer has.
        fd = pty_writer(serve)
        try:
            os.write(fd, b"".join(captured))
            assert replies_within(fd, 0.5) == []
        finally:
            os.close(fd)

    asyncio.run(scenario())


def injector_url(serve: SimServe) -> str:
    """The injector's MQTT link with the host identity's credentials sim serve served."""
    return link_on_broker("mqtt:///fluoroctl/simroom/injector", serve.info["broker"])


def injector(
    serve: SimServe, *, host_id: str | None = None, role: Role = Role.CONTROL
) -> AbstractAsyncContextManager[WireClient]:
    """The injector over MQTT. A shared medium, as a hospital network is: every host hears
    the device, so a second host meets the lease itself. (On a serial port a second process
    cannot even take part: it steals the first one's bytes.)"""
    return session(injector_url(serve), INJECTOR_ID, "injector", host_id=host_id, role=role)


def test_a_second_controller_is_refused_until_the_first_lets_go(sim_serve: Any) -> None:
    serve = sim_serve()

    async def scenario() -> None:
        async with injector(serve, host_id="exam-a") as first:
            with pytest.raises(ControlRefused, match="control is held by host exam-a"):
                async with injector(serve, host_id="console-b"):
                    pass
            # An observer is welcome, and may only look.
            async with injector(serve, host_id="console-b", role=Role.OBSERVE) as watcher:
                assert "state" in await watcher.call("status")
                with pytest.raises(DeviceStateError, match="needs the control lease"):
                    await watcher.call("disarm")
            await first.call("disarm")  # the controller never noticed
        async with injector(serve, host_id="console-b") as second:  # released at close
            await second.call("disarm")

    asyncio.run(scenario())


def test_the_cli_reports_a_held_room_in_one_line(sim_serve: Any, tmp_path: Path) -> None:
    serve = sim_serve()

    async def hold_and_run() -> subprocess.CompletedProcess[str]:
        async with injector(serve, host_id="someone-else"):
            return await asyncio.to_thread(
                cli,
                "run",
                "ivu-standard",
                *serve.run_args(),
                "--out",
                str(tmp_path / "exam"),
                timeout=60,
            )

    done = asyncio.run(hold_and_run())
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "control is held" in ln]
    assert len(lines) == 1 and "someone-else" in lines[0], done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "exam" / "summary.json").exists()  # no exam was started


def test_expose_in_safe_is_refused_until_the_new_controller_clears_it(sim_serve: Any) -> None:
    serve = sim_serve()
    # A controlling host process that dies without a word (kill -9): the C-arm goes SAFE.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import asyncio
                from tests.e2e.test_link_attacks import controller
                from tests.e2e.conftest import SimServe
                from pathlib import Path
                serve = SimServe(None, Path({str(serve.endpoints)!r}), Path("/dev/null"))
                async def main():
                    async with controller(serve, host_id="dies") as c:
                        await c.call("set_technique", {TECHNIQUE!r})
                        print("ready", flush=True)
                        await asyncio.sleep(3600)
                asyncio.run(main())
                """
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(1.5)  # the device's loss bound is 1 s of silence

    async def scenario() -> None:
        url = carm_url(serve)
        client = WireClient(
            lambda: open_link(url),
            device_id=CARM_ID,
            name="carm",
            clock=Clock.for_running_loop(),
            key=room_key(),
        )
        await client.connect(timeout_s=3.0)  # the dead host's lease went with it
        try:
            assert client.device_state is not None and client.device_state.name == "SAFE"
            with pytest.raises(DeviceFault, match="SAFE state") as refused:
                await client.call("expose", {"op_id": 77}, fire_once=True)
            assert refused.value.fault == "safe_state"
            assert await dap(client) == 0.0
            await client.call("link.clear_safe")
            await asyncio.sleep(0.3)
            assert client.device_state is not None and client.device_state.name != "SAFE"
        finally:
            await client.close()

    asyncio.run(scenario())


def test_forged_device_events_on_an_open_broker_are_dropped_and_journaled(
    tmp_path: Path, sim_serve: Any
) -> None:
    """Even on a broker with no ACL (a hospital broker someone misconfigured), a forged
    ``faulted`` event on the injector's topic does not end the exam: the host drops it, the
    journal says so, the record stays true."""
    from hardware_sim.broker import Mosquitto

    broker = Mosquitto()
    broker.start()
    try:
        url = f"mqtt://{broker.host}:{broker.port}"
        serve = sim_serve("--broker", url)
        out = tmp_path / "exam"
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler.cli",
                "run",
                "ivu-standard",
                "--room",
                str(LINKS_ROOM),
                "--endpoints",
                str(serve.endpoints),
                "--broker",
                url,
                "--out",
                str(out),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        forged = [
            encode_frame(event(40_000 + i, 3, "faulted", faults="air", t_s=1.0)) for i in range(3)
        ]
        stranger = Session(9, Role.CONTROL, "x", k_out=os.urandom(32), k_in=os.urandom(32))
        forged.append(encode_frame(event(40_100, 3, "faulted", faults="air"), stranger.seal))
        time.sleep(8.0)  # the exam is under way (60× time: the injection has started)
        _publish(broker, "fluoroctl/simroom/injector/up", forged)
        output, _ = run.communicate(timeout=240)
        assert run.returncode == 0, output + serve.output()
        lines = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
        security = [ln for ln in lines if ln.get("kind") == "security"]
        # The three unauthenticated copies are reported (coalesced); the frame sealed with a
        # made-up session is another session's as far as the host can tell (ignored, counted).
        assert sum(int(ln["data"]["count"]) for ln in security) == 3, security
        assert {ln["data"]["what"] for ln in security} == {"unauthenticated"}
        assert all(ln["source"] == "injector" for ln in security)
        assert not any(ln.get("kind") in ("faulted", "fault") for ln in lines)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["state"] == "completed"
    finally:
        broker.close()


def _sealed(data: bytes) -> bool:
    frames = [f for f in FrameDecoder().feed(data) if isinstance(f, Frame)]
    return bool(frames) and all(f.auth is not None for f in frames)


def _publish(broker: Any, topic: str, payloads: list[bytes]) -> None:
    import aiomqtt

    async def go() -> None:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            for data in payloads:
                await client.publish(topic, data)

    asyncio.run(go())
