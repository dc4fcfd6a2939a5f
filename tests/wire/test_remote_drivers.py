"""Reference drivers against the simulated devices' wire services, in one process.

The whole stack except the OS transport: RemoteCArm/RemoteTable/RemoteInjector → WireClient →
MemoryCable → DeviceEndpoint → device services → simulated devices, on virtual time. The cable's
fault switches make the ambiguous cases of fire-once commands happen on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers import (
    AmbiguousCommand,
    Clock,
    InjectionPhase,
    InjectionProgram,
    InjectorState,
    TablePosition,
    Technique,
    VirtualTimeEventLoop,
)
from drivers.backends import RoomRequest
from drivers.links import MemoryCable
from drivers.remote import RemoteCArm, RemoteInjector, RemoteTable
from drivers.wire.client import WireClient
from hardware_sim.room import SimRoom
from hardware_sim.serve._detector import DetectorService
from hardware_sim.serve.devices import CArmService, InjectorService, TableService
from hardware_sim.wire import DeviceEndpoint
from tests.keys import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = InjectionProgram((InjectionPhase(4.0, 20.0),), pressure_limit_kpa=2069.0)


@dataclass
class Wired:
    sim: SimRoom
    carm: RemoteCArm
    table: RemoteTable
    injector: RemoteInjector
    cables: dict[str, MemoryCable]
    endpoints: dict[str, DeviceEndpoint]
    services: dict[str, object]


@asynccontextmanager
async def wired_room() -> AsyncIterator[Wired]:
    clock = Clock.for_running_loop()
    sim = SimRoom(
        RoomRequest(
            {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"},
            clock,
            {"patient": "normal"},
            ROOT,
        )
    )
    now = clock.now
    services: dict[str, object] = {
        "detector": DetectorService("detector", now),
        "table": TableService(sim.table, now),
        "injector": InjectorService(sim.injector, now),
    }
    cables: dict[str, MemoryCable] = {}
    endpoints: dict[str, DeviceEndpoint] = {}
    tasks: list[asyncio.Task[None]] = []
    ids = {"carm": 1, "table": 2, "injector": 3, "detector": 4}

    def serve(role: str, service) -> None:
        cable = cables[role] = MemoryCable(f"memory://{role}")
        ep = endpoints[role] = DeviceEndpoint(
            cable.device_link,
            device_id=ids[role],
            name=role,
            handler=service.handle,
            clock=clock,
            key=TEST_KEY,
            on_host_lost=service.safe_state,
        )
        service.bind(ep)
        tasks.append(asyncio.create_task(ep.serve()))
        tasks.append(asyncio.create_task(service.forward_events()))

    for role in ("detector", "table", "injector"):
        serve(role, services[role])
    services["carm"] = CArmService(sim.carm, endpoints["detector"], now)
    serve("carm", services["carm"])
    sim.carm.subscribe(services["carm"].on_device_event)
    sim.table.subscribe(services["table"].on_device_event)
    sim.injector.subscribe(services["injector"].on_device_event)
    clients = {
        role: WireClient(
            cables[role].host_link, device_id=ids[role], name=role, clock=clock, key=TEST_KEY
        )
        for role in ids
    }
    for client in clients.values():
        await client.connect()
    wired = Wired(
        sim,
        RemoteCArm("carm", clients["carm"], clients["detector"]),
        RemoteTable("table", clients["table"]),
        RemoteInjector("injector", clients["injector"]),
        cables,
        endpoints,
        services,
    )
    try:
        yield wired
    finally:
        for device in (wired.carm, wired.table, wired.injector):
            await device.aclose()
        await clients["detector"].close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run(coro_fn) -> None:
    loop = VirtualTimeEventLoop()
    try:
        loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def test_exposure_frame_matches_the_simulated_detector() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(Technique(75.0, 400.0, 50.0))
            t0 = asyncio.get_running_loop().time()
            frame = await w.carm.expose()
            assert frame.pixels.shape == (1024, 1024) and frame.pixels.dtype.name == "uint16"
            # device time mapped onto the host clock: the exposure is after the command
            assert t0 <= frame.acquired_at_s <= asyncio.get_running_loop().time()
            assert frame.technique.kv == 75.0 and frame.dose.reference_air_kerma_mgy > 0
            status = await w.carm.status()
            assert status.cumulative_reference_air_kerma_mgy == pytest.approx(
                frame.dose.reference_air_kerma_mgy
            )

    run(go)


def test_table_move_waits_for_motion_complete() -> None:
    async def go() -> None:
        async with wired_room() as w:
            events: list[str] = []
            w.table.subscribe(lambda e: events.append(e.kind))
            status = await w.table.move_to(TablePosition(longitudinal_mm=200.0))
            assert status.position.longitudinal_mm == 200.0 and not status.moving
            await asyncio.sleep(0.5)
            assert "motion_complete" in events

    run(go)


def test_injection_over_the_wire_reports_start_and_end() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.injector.arm(PROGRAM)
            await w.injector.start()
            started = await w.injector.wait_started()
            assert started.started_at_s is not None
            done = await w.injector.wait_finished(timeout_s=30.0)
            assert done.state is InjectorState.COMPLETED
            assert done.delivered_ml == pytest.approx(20.0, abs=0.05)

    run(go)


def test_lost_start_reply_is_resolved_by_a_status_query_never_a_second_start() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.injector.arm(PROGRAM)
            starts: list[str] = []
            w.sim.injector.subscribe(
                lambda e: starts.append(e.kind) if e.kind == "start_acknowledged" else None
            )
            w.endpoints["injector"].drop_next_replies(1)  # the start happens; its reply is lost
            status = await w.injector.start()
            assert status.state is InjectorState.INJECTING
            await asyncio.sleep(1.0)
            assert starts == ["start_acknowledged"], "start must never be re-sent"

    run(go)


def test_start_that_never_arrived_is_ambiguous_and_not_resent() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.injector.arm(PROGRAM)
            w.cables["injector"].drop_next(1, to_device=True)  # the start request is lost
            with pytest.raises(AmbiguousCommand):
                await w.injector.start()
            status = await w.injector.status()
            assert status.state is InjectorState.ARMED, "nothing may have started it"

    run(go)


def test_lost_expose_reply_keeps_waiting_for_the_accepted_exposure() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(Technique(75.0, 400.0, 50.0))
            w.endpoints["carm"].drop_next_replies(1)
            frame = await w.carm.expose()
            assert frame.pixels.shape == (1024, 1024)
            status = await w.carm.status()
            # exactly one exposure's dose: the request was not re-sent
            assert status.cumulative_reference_air_kerma_mgy == pytest.approx(
                frame.dose.reference_air_kerma_mgy
            )

    run(go)


def test_heartbeat_loss_puts_the_device_in_safe_state_and_tells_the_host() -> None:
    async def go() -> None:
        async with wired_room() as w:
            lost: list[str] = []
            w.injector.subscribe(lambda e: lost.append(e.kind) if "link" in e.kind else None)
            await w.injector.arm(PROGRAM)
            await w.injector.start()
            await w.injector.wait_started()
            w.cables["injector"].blackhole = True  # the wire is cut silently
            await asyncio.sleep(2.0)
            assert "link_lost" in lost
            # the injector stopped itself when the host went silent
            device_side = await w.sim.injector.status()
            assert device_side.state is InjectorState.STOPPED
            assert device_side.delivered_ml < 20.0

    run(go)
