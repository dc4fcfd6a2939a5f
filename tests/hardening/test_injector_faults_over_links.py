"""Hazard: over real links an injector fault reached the scheduler as a comma-joined string.

The wire is flat (docs/wire-protocol.md §2.1), so a list such as ``faults`` travels as
``"occlusion"`` or ``"air_detected,occlusion"``. The engine iterated that string character by
character: every "fault" (``o``, ``c``, …) missed the room's policy and aborted the exam. The
reference drivers now hand list-valued fields to the scheduler as a tuple of str, exactly as
the in-process simulator does; these tests check it at the driver and over real links.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers import (
    Clock,
    DeviceEvent,
    InjectionPhase,
    InjectionProgram,
    InjectorFault,
    InjectorState,
    VirtualTimeEventLoop,
)
from drivers.backends import RoomRequest
from drivers.links import MemoryCable
from drivers.remote import RemoteInjector
from drivers.wire.client import WireClient
from hardware_sim.room import SimRoom
from hardware_sim.serve.devices import InjectorService
from hardware_sim.wire import DeviceEndpoint
from scheduler.policy import FaultPolicy
from tests.e2e.conftest import SimServe, cli, start_sim_serve, stop_sim_serve
from tests.keys import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = InjectionProgram((InjectionPhase(4.0, 40.0),), pressure_limit_kpa=2069.0)
ACCELERATED = ROOT / "configs/protocols/ivu-accelerated.yaml"
#: each injector fault kind: its ``--fault`` spec name and the name the device reports
KINDS = [
    ("injector.over_pressure", InjectorFault.OVER_PRESSURE),
    ("injector.air", InjectorFault.AIR_DETECTED),
    ("injector.occlusion", InjectorFault.OCCLUSION),
    ("injector.stall", InjectorFault.MOTOR_STALL),
]


@asynccontextmanager
async def wired_injector() -> AsyncIterator[tuple[SimRoom, RemoteInjector]]:
    """RemoteInjector → WireClient → MemoryCable → DeviceEndpoint → InjectorService → sim."""
    clock = Clock.for_running_loop()
    links = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}
    sim = SimRoom(RoomRequest(links, clock, {"patient": "normal"}, ROOT))
    service = InjectorService(sim.injector, clock.now)
    cable = MemoryCable("memory://injector")
    endpoint = DeviceEndpoint(
        cable.device_link,
        device_id=3,
        name="injector",
        handler=service.handle,
        clock=clock,
        key=TEST_KEY,
        on_host_lost=service.safe_state,
    )
    service.bind(endpoint)
    sim.injector.subscribe(service.on_device_event)
    tasks = [asyncio.create_task(endpoint.serve()), asyncio.create_task(service.forward_events())]
    client = WireClient(cable.host_link, device_id=3, name="injector", clock=clock, key=TEST_KEY)
    await client.connect()
    remote = RemoteInjector("injector", client)
    try:
        yield sim, remote
    finally:
        await remote.aclose()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_virtual(coro: Any) -> Any:
    loop = VirtualTimeEventLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def faulted_event(trip: list[InjectorFault], *, remote_side: bool) -> DeviceEvent:
    """Trip ``trip`` during an injection; the ``faulted`` event the scheduler would see."""
    async with wired_injector() as (sim, remote):
        seen: list[DeviceEvent] = []
        (remote if remote_side else sim.injector).subscribe(seen.append)
        await remote.arm(PROGRAM)
        await remote.start()
        await remote.wait_started()
        await asyncio.sleep(1.0)
        for fault in trip:
            sim.injector.trip(fault)
        status = await remote.wait_finished(timeout_s=5.0)
        assert status.state is InjectorState.FAULTED
        await asyncio.sleep(0.5)  # the critical event crosses the cable
        return next(e for e in seen if e.kind == "faulted")


@pytest.mark.parametrize(("spec", "fault"), KINDS, ids=[k for k, _ in KINDS])
def test_remote_injector_event_carries_faults_as_a_tuple_of_names(spec, fault):
    event = run_virtual(faulted_event([fault], remote_side=True))
    assert event.data["faults"] == (fault.value,)
    assert all(type(f) is str for f in event.data["faults"])


def test_remote_and_in_process_events_agree_on_the_faults_type():
    remote = run_virtual(faulted_event([InjectorFault.OCCLUSION], remote_side=True))
    local = run_virtual(faulted_event([InjectorFault.OCCLUSION], remote_side=False))
    assert remote.data["faults"] == local.data["faults"] == ("occlusion",)
    assert type(remote.data["faults"]) is type(local.data["faults"]) is tuple


def test_an_empty_fault_list_is_an_empty_tuple_not_an_empty_string():
    async def go() -> DeviceEvent:
        async with wired_injector() as (_sim, remote):
            seen: list[DeviceEvent] = []
            remote.subscribe(seen.append)
            await remote.arm(InjectionProgram((InjectionPhase(4.0, 2.0),), 2069.0))
            await remote.start()
            await remote.wait_finished(timeout_s=10.0)
            await asyncio.sleep(0.5)
            return next(e for e in seen if e.kind == "completed")

    assert run_virtual(go()).data["faults"] == ()


# -- end to end: `sim serve` with the fault, `run` against it over serial, MQTT, USB, TCP -------


@pytest.fixture
def sim_serve(tmp_path: Path) -> Iterator[Callable[..., SimServe]]:
    """``sim_serve(*extra_args)``: tests/e2e's simulated room over links, stopped after."""
    started: list[SimServe] = []

    def start(*extra: str) -> SimServe:
        started.append(start_sim_serve(tmp_path, *extra))
        return started[-1]

    yield start
    for serve in started:
        stop_sim_serve(serve)


def journal(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("spec", "fault"), KINDS, ids=[k for k, _ in KINDS])
def test_injector_fault_over_real_links_follows_the_room_policy(sim_serve, tmp_path, spec, fault):
    # 40 mL over 30 s: at T+20s contrast is flowing, so the fault halts a running injection.
    assert FaultPolicy().injector[fault.value] == "continue"  # the room file keeps the default
    serve = sim_serve("--fault", f"{spec}@T+20s")
    out = tmp_path / "exam"
    run = cli("run", str(ACCELERATED), *serve.run_args(), "--out", str(out), timeout=120)
    events = journal(out)
    summary = json.loads((out / "summary.json").read_text())
    faults = [e for e in events if e["kind"] == "fault" and e["data"].get("device") == "injector"]
    assert [e["data"]["fault"] for e in faults] == [fault.value], faults
    assert faults[0]["data"]["reaction"] == "injection stopped; imaging continues"
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert summary["state"] == "completed", summary.get("reason")
    steps = {s["id"]: s for s in summary["steps"]}
    for later in ("film-1min", "film-4min", "film-7min", "prone"):
        assert steps[later]["status"] == "done" and steps[later]["files"], steps[later]
    delivered = summary["totals"]["contrast_delivered_ml"]
    assert 0 < delivered < 40.0, "the injection was halted part way"
    assert [e["kind"] for e in events].count("injection_started") == 1
