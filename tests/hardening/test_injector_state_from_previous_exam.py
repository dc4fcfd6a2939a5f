"""Hazard: an injector that still holds the previous exam's injection.

After an exam, a simulated injector (``sim serve`` keeps running between exams) reports
COMPLETED, STOPPED or FAULTED with the delivered volume and the start time of that exam. Armed
again as it was, a new exam's ``wait_started`` saw the *old* start time and anchored its timed
films to the previous patient's injection. The injector now:

* accepts ``disarm`` from COMPLETED, STOPPED and FAULTED and comes back IDLE with nothing
  delivered, no start or end time and no faults (a new syringe and program);
* refuses ``disarm`` while INJECTING or HOLDING (DeviceStateError; over the wire a BAD_STATE
  reply, which the reference driver raises as DeviceStateError) and keeps injecting;
* refuses ``arm`` from an ended injection until it was disarmed.

The same holds in-process, behind the wire endpoint, and for drivers.mock.MockInjector.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers import (
    Clock,
    DeviceEvent,
    DeviceFault,
    DeviceStateError,
    InjectionPhase,
    InjectionProgram,
    Injector,
    InjectorFault,
    InjectorState,
    new_event_loop,
)
from drivers.backends import RoomRequest, backend_for_links
from drivers.mock import CallLog, MockInjector
from hardware_sim.injector import SimInjector
from hardware_sim.room import SimRoom
from scheduler.links import load_endpoints, resolve_links
from scheduler.room import load_room
from tests.e2e.conftest import LINKS_ROOM, SimServe, cli, start_sim_serve, stop_sim_serve

from .test_injector_faults_over_links import wired_injector

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = InjectionProgram((InjectionPhase(4.0, 20.0),), pressure_limit_kpa=2069.0)
ENDED = ["completed", "stopped", "faulted", "faulted-before-start"]


def sim_room() -> SimRoom:
    links = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}
    return SimRoom(RoomRequest(links, Clock.for_running_loop(), {"patient": "normal"}, ROOT))


async def end_injection(sim: SimInjector, injector: Injector, how: str) -> None:
    """Drive the injector (through ``injector``, the driver under test) to an ended state."""
    if how == "faulted-before-start":
        sim.trip(InjectorFault.AIR_DETECTED)
        return
    await injector.arm(PROGRAM)
    await injector.start()
    await injector.wait_started()
    await asyncio.sleep(2.0)
    if how == "stopped":
        await injector.stop()
    elif how == "faulted":
        sim.trip(InjectorFault.OCCLUSION)
    await injector.wait_finished(timeout_s=30.0)


async def check_disarm_resets(sim: SimInjector, injector: Injector, how: str) -> None:
    await end_injection(sim, injector, how)
    before = await injector.status()
    assert before.state.value == how.split("-")[0]
    if how != "faulted-before-start":
        assert before.delivered_ml > 0 and before.started_at_s is not None
        # not armable as it is: the old injection would anchor the new exam
        with pytest.raises(DeviceStateError):
            await injector.arm(PROGRAM)
    await injector.disarm()
    after = await injector.status()
    assert after.state is InjectorState.IDLE
    assert after.delivered_ml == 0.0
    assert after.started_at_s is None and after.ended_at_s is None
    assert after.faults == ()
    # a new program injects afresh, with its own start time
    await injector.arm(PROGRAM)
    t_arm = asyncio.get_running_loop().time()
    await injector.start()
    started = await injector.wait_started()
    assert started.started_at_s is not None and started.started_at_s >= t_arm
    done = await injector.wait_finished(timeout_s=30.0)
    assert done.state is InjectorState.COMPLETED
    assert done.delivered_ml == pytest.approx(PROGRAM.volume_ml, abs=0.05)


async def check_disarm_refused_while_running(sim: SimInjector, injector: Injector) -> None:
    await injector.arm(PROGRAM)
    await injector.start()
    await injector.wait_started()
    await asyncio.sleep(1.0)
    with pytest.raises(DeviceStateError):
        await injector.disarm()
    running = await injector.status()
    assert running.state is InjectorState.INJECTING
    await injector.hold()
    with pytest.raises(DeviceStateError):
        await injector.disarm()
    held = await injector.status()
    assert held.state is InjectorState.HOLDING and held.started_at_s is not None
    await injector.resume()
    done = await injector.wait_finished(timeout_s=30.0)
    assert done.state is InjectorState.COMPLETED
    assert done.delivered_ml == pytest.approx(PROGRAM.volume_ml, abs=0.05)


@pytest.mark.parametrize("how", ENDED)
def test_in_process_injector_disarm_resets_an_ended_injection(run_virtual, how):
    async def go() -> None:
        room = sim_room()
        events: list[DeviceEvent] = []
        room.injector.subscribe(events.append)
        await check_disarm_resets(room.injector, room.injector, how)
        # the new injection announced its own start
        assert [e.kind for e in events].count("injection_started") == (
            1 if how == "faulted-before-start" else 2
        )

    run_virtual(go)


def test_in_process_injector_refuses_disarm_while_injecting_or_holding(run_virtual):
    async def go() -> None:
        room = sim_room()
        await check_disarm_refused_while_running(room.injector, room.injector)

    run_virtual(go)


@pytest.mark.parametrize("how", ENDED)
def test_injector_behind_the_wire_disarm_resets_an_ended_injection(run_virtual, how):
    async def go() -> None:
        async with wired_injector() as (sim, remote):
            await check_disarm_resets(sim.injector, remote, how)

    run_virtual(go)


def test_injector_behind_the_wire_refuses_disarm_while_injecting_or_holding(run_virtual):
    async def go() -> None:
        async with wired_injector() as (sim, remote):
            await check_disarm_refused_while_running(sim.injector, remote)

    run_virtual(go)


def test_a_faulted_before_start_injector_still_refuses_to_arm_until_disarmed(run_virtual):
    async def go() -> None:
        room = sim_room()
        room.injector.trip(InjectorFault.AIR_DETECTED)
        with pytest.raises(DeviceFault):
            await room.injector.arm(PROGRAM)
        await room.injector.disarm()
        await room.injector.arm(PROGRAM)
        assert (await room.injector.status()).state is InjectorState.ARMED

    run_virtual(go)


# -- drivers.mock.MockInjector behaves the same ---------------------------------------------


def mock_injector() -> MockInjector:
    return MockInjector("injector", Clock.for_running_loop(), CallLog())


@pytest.mark.parametrize("how", ["completed", "stopped"])
def test_mock_injector_disarm_resets_an_ended_injection(run_virtual, how):
    async def go() -> None:
        injector = mock_injector()
        await injector.arm(PROGRAM)
        if how == "stopped":
            injector.state = InjectorState.INJECTING  # the mock completes at once otherwise
            injector.started_at = asyncio.get_running_loop().time()
            await injector.stop()
        else:
            await injector.start()
        before = await injector.status()
        assert before.state.value == how and before.started_at_s is not None
        with pytest.raises(DeviceStateError):
            await injector.arm(PROGRAM)
        await injector.disarm()
        after = await injector.status()
        assert after.state is InjectorState.IDLE
        assert after.delivered_ml == 0.0 and after.started_at_s is None
        assert after.ended_at_s is None and after.faults == ()
        await injector.arm(PROGRAM)
        assert (await injector.status()).state is InjectorState.ARMED

    run_virtual(go)


@pytest.mark.parametrize("state", [InjectorState.INJECTING, InjectorState.HOLDING])
def test_mock_injector_refuses_disarm_while_injecting_or_holding(run_virtual, state):
    async def go() -> None:
        injector = mock_injector()
        await injector.arm(PROGRAM)
        injector.state = state
        with pytest.raises(DeviceStateError):
            await injector.disarm()
        assert injector.state is state

    run_virtual(go)


# -- over real links: `sim serve` that already ran an exam -------------------------------------


def with_room_devices(serve: SimServe, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Open the room's devices over its real links (as `fluoroctl run` does) and run work."""
    room = load_room(LINKS_ROOM)
    endpoints = load_endpoints(serve.endpoints)
    links = resolve_links(room.links, endpoints=endpoints, broker=None, room_broker=room.broker)
    loop = new_event_loop("scaled", time_scale=endpoints.time_scale)

    async def go() -> Any:
        clock = Clock.for_running_loop()
        devices = await backend_for_links(links)(
            RoomRequest(
                links,
                clock,
                dict(room.options),
                ROOT,
                key_file=ROOT / str(room.key_file),  # what sim serve authenticates with
            )
        )
        try:
            return await work(devices.injector)
        finally:
            await devices.aclose()

    try:
        return loop.run_until_complete(go())
    finally:
        loop.close()


def test_sim_serve_injector_after_an_exam_is_reset_by_disarm(tmp_path):
    serve = start_sim_serve(tmp_path)
    try:
        protocol = ROOT / "configs/protocols/ivu-accelerated.yaml"
        run = cli("run", str(protocol), *serve.run_args(), "--out", str(tmp_path / "exam"))
        assert run.returncode == 0, run.stderr[-2000:]

        async def check(injector: Injector) -> None:
            left = await injector.status()
            assert left.state is InjectorState.COMPLETED
            assert left.delivered_ml == pytest.approx(40.0, abs=0.1)
            assert left.started_at_s is not None
            with pytest.raises(DeviceStateError):
                await injector.arm(PROGRAM)
            await injector.disarm()
            fresh = await injector.status()
            assert fresh.state is InjectorState.IDLE
            assert fresh.delivered_ml == 0.0 and fresh.started_at_s is None
            assert fresh.ended_at_s is None and fresh.faults == ()

        with_room_devices(serve, check)
    finally:
        stop_sim_serve(serve)


def test_a_second_exam_on_a_running_sim_serve_gets_a_fresh_injection(tmp_path):
    serve = start_sim_serve(tmp_path)
    try:
        protocol = ROOT / "configs/protocols/ivu-accelerated.yaml"
        outs = [tmp_path / "first", tmp_path / "second"]
        for out in outs:
            run = cli("run", str(protocol), *serve.run_args(), "--out", str(out))
            assert run.returncode == 0, run.stderr[-2000:]
        first, second = (json.loads((o / "summary.json").read_text()) for o in outs)
        assert first["state"] == second["state"] == "completed"
        assert second["totals"]["contrast_delivered_ml"] == pytest.approx(40.0, abs=0.1)
        confirmed = [
            e
            for e in map(json.loads, (outs[1] / "events.jsonl").read_text().splitlines())
            if e["kind"] == "injection_confirmed"
        ]
        assert len(confirmed) == 1
        # timed from its own injection, not the first exam's: its scout came before it and
        # its films are at their time points after it
        steps = {st["id"]: st for st in second["steps"]}
        assert steps["scout"]["actual_after_injection_s"] < 0
        for st in second["steps"]:
            if st["planned_after_injection_s"] is not None:
                lateness = st["actual_after_injection_s"] - st["planned_after_injection_s"]
                assert 0 <= lateness < 3.0, st
    finally:
        stop_sim_serve(serve)
