import asyncio
import itertools

import pytest

from drivers import (
    KPA_PER_PSI,
    Clock,
    DeviceStateError,
    InjectionPhase,
    InjectionProgram,
    InjectorFault,
    InjectorState,
)
from hardware_sim.injector import START_LATENCY_S, SimInjector, plan_profile
from hardware_sim.line import line_resistance_kpa_s_ml
from hardware_sim.scenario import Access, Scenario


class FakePatient:
    """Records the iodine the injector hands over."""

    def __init__(self, resistance: float) -> None:
        self.line_resistance_kpa_s_ml = resistance
        self.iodine_mg = 0.0

    def infuse_until(self, t: float, iodine_mg: float) -> None:
        self.iodine_mg += iodine_mg


def program(volume=50.0, flow=2.0, limit_psi=300.0, rise=0.5):
    return InjectionProgram((InjectionPhase(flow, volume),), limit_psi * KPA_PER_PSI, rise, 300.0)


def test_profile_volume_matches_program():
    segs = plan_profile(10.0, [50.0, 20.0], [2.0, 1.0], [0.0, 5.0], 0.5, 0)
    total = sum(s.volume(1e9) for s in segs)
    assert total == pytest.approx(70.0)
    assert segs[0].t0 == 10.0 and segs[0].f0 == 0.0  # ramps up from rest
    assert any(s.f0 == 0 and s.f1 == 0 and s.t1 - s.t0 == pytest.approx(5.0) for s in segs)


def test_line_resistance_gives_measured_pressure_band():
    # 18 G + tubing at 2.5 mL/s with ~13 mPa·s contrast at 20 °C: 38–60 psi measured [S94]
    scenario = Scenario(id="x", name="A^B", access=Access(gauge=18), contrast_viscosity_mpa_s=13.0)
    pressure_psi = 2.5 * line_resistance_kpa_s_ml(scenario) / KPA_PER_PSI
    assert 38 <= pressure_psi <= 60


def test_injection_delivers_program_and_reports_start(run_virtual):
    patient = FakePatient(resistance=60.0)
    statuses = []

    async def main():
        clock = Clock.for_running_loop()
        inj = SimInjector("injector", clock, patient)  # type: ignore[arg-type]
        inj.subscribe(lambda e: statuses.append(e) if e.kind == "status" else None)
        await inj.arm(program())
        t_cmd = clock.now()
        await inj.start()
        started = await inj.wait_started()
        final = await inj.wait_finished(timeout_s=60)
        return t_cmd, started, final

    t_cmd, started, final = run_virtual(main)
    assert started.started_at_s == pytest.approx(t_cmd + START_LATENCY_S)
    assert final.state is InjectorState.COMPLETED
    assert final.delivered_ml == pytest.approx(50.0, abs=1e-6)
    assert patient.iodine_mg == pytest.approx(50.0 * 300.0, rel=1e-6)
    # 50 mL at 2 mL/s with a 0.5 s ramp: 25 s + half the ramp
    assert final.ended_at_s - started.started_at_s == pytest.approx(25.25, abs=0.11)
    rates = [1 / (b.device_time_s - a.device_time_s) for a, b in itertools.pairwise(statuses)]
    assert min(rates) >= 9.9  # ≥ 10 Hz status
    flows = [e.data["flow_ml_s"] for e in statuses]
    assert flows[0] < 2.0 and max(flows) == pytest.approx(2.0)  # rise time visible
    pressures = [e.data["pressure_kpa"] for e in statuses]
    assert max(pressures) == pytest.approx(2.0 * 60.0, rel=0.05)


def test_start_is_fire_once(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        inj = SimInjector("injector", clock, FakePatient(60.0))  # type: ignore[arg-type]
        await inj.arm(program())
        await inj.start()
        with pytest.raises(DeviceStateError, match="not armed"):
            await inj.start()
        await inj.stop()
        with pytest.raises(DeviceStateError):
            await inj.start()

    run_virtual(main)


def test_hold_resume_keeps_volume_exact(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        inj = SimInjector("injector", clock, FakePatient(60.0))  # type: ignore[arg-type]
        await inj.arm(program())
        await inj.start()
        await asyncio.sleep(5.0)
        await inj.hold()
        held = await inj.status()
        await asyncio.sleep(10.0)
        still = await inj.status()
        await inj.resume()
        final = await inj.wait_finished(timeout_s=120)
        return held, still, final

    held, still, final = run_virtual(main)
    assert held.state is InjectorState.HOLDING
    assert still.delivered_ml == pytest.approx(held.delivered_ml)
    assert 7.0 < held.delivered_ml < 10.0
    assert final.delivered_ml == pytest.approx(50.0, abs=1e-6)


def test_stop_is_immediate_and_final(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        inj = SimInjector("injector", clock, FakePatient(60.0))  # type: ignore[arg-type]
        await inj.arm(program())
        await inj.start()
        await asyncio.sleep(3.0)
        await inj.stop()
        stopped = await inj.status()
        await asyncio.sleep(30.0)
        return stopped, await inj.status()

    stopped, later = run_virtual(main)
    assert stopped.state is InjectorState.STOPPED
    assert later.delivered_ml == stopped.delivered_ml
    assert later.flow_ml_s == 0.0


def test_over_pressure_halts(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        # A kinked line: resistance so high that 2 mL/s needs 5× the 100 psi limit.
        inj = SimInjector("injector", clock, FakePatient(5 * 100 * KPA_PER_PSI / 2.0))  # type: ignore[arg-type]
        await inj.arm(program(limit_psi=100))
        await inj.start()
        return await inj.wait_finished(timeout_s=60)

    final = run_virtual(main)
    assert final.state is InjectorState.FAULTED
    assert InjectorFault.OVER_PRESSURE in final.faults
    assert final.delivered_ml < 5.0


def test_injected_fault(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        inj = SimInjector("injector", clock, FakePatient(60.0))  # type: ignore[arg-type]
        await inj.arm(program())
        inj.inject_fault_at(clock.now() + 4.0, InjectorFault.AIR_DETECTED)
        await inj.start()
        return await inj.wait_finished(timeout_s=60)

    final = run_virtual(main)
    assert final.state is InjectorState.FAULTED
    assert final.faults == (InjectorFault.AIR_DETECTED,)
    assert 5.0 < final.delivered_ml < 9.0


def test_a_closed_room_leaves_no_task_of_an_injection_in_flight(run_virtual):
    """A simulated room closed mid-injection (an exam that ended early, a test) stops the
    injection's clock with it: nothing is left pending on the loop to be destroyed later."""
    from pathlib import Path

    from drivers.backends import RoomRequest
    from hardware_sim.room import SimRoom

    links = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}
    root = Path(__file__).resolve().parents[2]

    async def main():
        room = SimRoom(RoomRequest(links, Clock.for_running_loop(), {"patient": "normal"}, root))
        await room.injector.arm(program())
        await room.injector.start()
        await room.injector.wait_started()
        await asyncio.sleep(3.0)
        before = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await room.aclose()
        after = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return len(before), after, (await room.injector.status()).state

    running, left, state = run_virtual(main)
    assert running >= 1  # the injection's clock was running
    assert left == []
    assert state is InjectorState.INJECTING  # closing is not a command to the injector
