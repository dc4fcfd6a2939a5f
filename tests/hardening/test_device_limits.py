"""Hazard (issue 12): a host bug or an attacker on a link armed the injector at 500 mL /
30 mL/s / 8000 kPa and fired a 150 kV 100 mAs exposure; the devices did whatever they were
told.

The simulated injector and generator hold their own hard limits (hardware_sim/limits.py,
configured by the room's ``device_limits`` simulator option) and refuse anything beyond them,
in process with :class:`DeviceLimitExceeded` and over the wire with an INTERLOCK reply naming
the limit; the device's state is left as it was: nothing armed, nothing injected, no exposure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers import (
    Clock,
    DeviceFault,
    DeviceStateError,
    FluoroRequest,
    InjectionPhase,
    InjectionProgram,
    InjectorState,
    Technique,
    TomoRequest,
)
from drivers.backends import RoomRequest
from drivers.config import ConfigError
from drivers.errors import LIMIT_FAULT, DeviceLimitExceeded
from drivers.remote._fields import fluoro_fields, program_fields
from drivers.wire import Status
from hardware_sim.limits import GeneratorLimits
from hardware_sim.room import SimRoom
from tests.wire.test_remote_drivers import wired_room

ROOT = Path(__file__).resolve().parents[2]
LINKS = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}

#: the attack of issue 12, and each of its excesses alone (the others within every limit)
ATTACK = InjectionProgram((InjectionPhase(30.0, 500.0),), pressure_limit_kpa=8000.0)
EXCESSES = {
    "max_volume_ml": InjectionProgram((InjectionPhase(4.0, 500.0),), 2000.0),
    "max_flow_ml_s": InjectionProgram((InjectionPhase(30.0, 50.0),), 2000.0),
    "max_pressure_kpa": InjectionProgram((InjectionPhase(4.0, 50.0),), 8000.0),
}
#: a room that configured its generator down: 125 kV, 50 mAs per exposure
ROOM_GENERATOR = {"carm": {"max_kv": 125, "max_mas": 50}}
#: beyond the defaults (600 mAs per exposure, AEC back-up)
HUGE_MAS = Technique(kv=120.0, ma=800.0, exposure_ms=1000.0)  # 800 mAs
ISSUE_EXPOSURE = Technique.from_mas(kv=150.0, mas=100.0, ma=500.0)


def sim_room(options: dict[str, object] | None = None, base: Path = ROOT) -> SimRoom:
    patient = {"patient": str(ROOT / "configs/patients/normal.yaml")}
    return SimRoom(RoomRequest(LINKS, Clock.for_running_loop(), patient | (options or {}), base))


async def nothing_delivered(room: SimRoom) -> None:
    """A start attempted after the refusal finds nothing armed; no contrast ever flows."""
    with pytest.raises(DeviceStateError):
        await room.injector.start()
    await asyncio.sleep(30.0)
    status = await room.injector.status()
    assert status.state is InjectorState.IDLE
    assert status.delivered_ml == 0.0 and status.started_at_s is None
    assert status.delivered_total_ml == 0.0 and status.injections_started == 0
    assert room.patient.kinetics.total_iodine_in_mg == 0.0


# -- in process -----------------------------------------------------------------------------
@pytest.mark.parametrize("limit", sorted(EXCESSES))
def test_a_program_beyond_the_injectors_own_limits_is_refused_and_nothing_is_armed(
    limit, run_virtual
):
    async def go() -> None:
        room = sim_room()
        with pytest.raises(DeviceLimitExceeded) as refused:
            await room.injector.arm(EXCESSES[limit])
        assert refused.value.limit == limit and refused.value.fault == LIMIT_FAULT
        assert limit in str(refused.value)
        await nothing_delivered(room)

    run_virtual(go)


def test_the_issue_attack_is_refused_in_process(run_virtual):
    async def go() -> None:
        room = sim_room()
        with pytest.raises(DeviceLimitExceeded):
            await room.injector.arm(ATTACK)
        await nothing_delivered(room)

    run_virtual(go)


def test_a_program_within_the_limits_still_runs(run_virtual):
    async def go() -> None:
        room = sim_room()
        await room.injector.arm(InjectionProgram((InjectionPhase(5.0, 150.0),), 2069.0))
        await room.injector.start()
        done = await room.injector.wait_finished(timeout_s=60.0)
        assert done.delivered_ml == pytest.approx(150.0)
        assert done.delivered_total_ml == pytest.approx(150.0) and done.injections_started == 1

    run_virtual(go)


def test_the_room_configures_the_devices_limits_from_a_file_of_their_own(tmp_path, run_virtual):
    (tmp_path / "limits.yaml").write_text(
        "device_limits:\n"
        "  injector: {max_volume_ml: 100, max_total_volume_ml: 150}\n"
        "  carm: {max_kv: 125, max_mas: 50}\n"
    )

    async def go() -> None:
        room = sim_room({"device_limits": "limits.yaml"}, base=tmp_path)
        assert room.injector.limits.max_volume_ml == 100.0
        with pytest.raises(DeviceLimitExceeded, match="max_volume_ml"):
            await room.injector.arm(InjectionProgram((InjectionPhase(4.0, 120.0),), 2069.0))
        program = InjectionProgram((InjectionPhase(5.0, 80.0),), 2069.0)
        await room.injector.arm(program)
        await room.injector.start()
        await room.injector.wait_finished(timeout_s=60.0)
        await room.injector.disarm()
        # 80 delivered since the reset: another 80 would pass the 150 mL total
        with pytest.raises(DeviceLimitExceeded, match="max_total_volume_ml"):
            await room.injector.arm(program)
        with pytest.raises(DeviceLimitExceeded, match="max_kv"):
            await room.carm.set_technique(ISSUE_EXPOSURE)

    run_virtual(go)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("device_limits:\n  injector: {max_flow_ml_s: -1}\n", 2, "max_flow_ml_s"),
        ("device_limits:\n  carm:\n    max_kv: 150\n    kv_max: 90\n", 4, "kv_max"),
        ("device_limits:\n  carm: {min_kv: 100, max_kv: 60}\n", 2, "carm"),
        ("limits: {}\n", 1, "device_limits"),
    ],
)
def test_a_bad_device_limits_file_is_refused_in_one_line_naming_file_line_and_field(
    tmp_path, run_virtual, text, line, field
):
    path = tmp_path / "limits.yaml"
    path.write_text(text)

    async def go() -> None:
        with pytest.raises(ConfigError) as bad:
            sim_room({"device_limits": "limits.yaml"}, base=tmp_path)
        message = str(bad.value)
        assert "\n" not in message
        assert message.startswith(f"{path}:{line}:"), message
        assert field in message

    run_virtual(go)


def test_a_missing_device_limits_file_is_refused(tmp_path, run_virtual):
    async def go() -> None:
        with pytest.raises(ConfigError, match=r"nowhere\.yaml"):
            sim_room({"device_limits": "nowhere.yaml"}, base=tmp_path)

    run_virtual(go)


def test_an_exposure_beyond_the_generators_limits_is_refused_and_none_is_recorded(run_virtual):
    async def go() -> None:
        room = sim_room({"device_limits": ROOM_GENERATOR})
        exposures: list[str] = []
        room.carm.subscribe(lambda e: exposures.append(e.kind))
        with pytest.raises(DeviceLimitExceeded) as refused:
            await room.carm.set_technique(ISSUE_EXPOSURE)
        assert refused.value.limit == "max_kv"
        with pytest.raises(DeviceLimitExceeded, match="max_mas"):
            await room.carm.set_technique(Technique.from_mas(kv=80.0, mas=100.0, ma=500.0))
        with pytest.raises(DeviceStateError, match="no technique"):
            await room.carm.expose()  # the refused technique was never set
        status = await room.carm.status()
        assert status.technique is None
        assert (
            status.cumulative_reference_air_kerma_mgy == 0.0 and status.cumulative_dap_gy_cm2 == 0
        )
        assert "exposure" not in exposures and "technique_set" not in exposures

    run_virtual(go)


def test_default_limits_refuse_an_800_mas_exposure(run_virtual):
    async def go() -> None:
        room = sim_room()
        with pytest.raises(DeviceLimitExceeded, match="max_mas"):
            await room.carm.set_technique(HUGE_MAS)
        assert (await room.carm.status()).technique is None

    run_virtual(go)


@pytest.mark.parametrize(
    ("request_", "limit"),
    [
        (FluoroRequest(3.75, 4.0, Technique(140.0, 25.0, 8.0)), "fluoro_max_kv"),
        # 50 mA pulses of 40 ms at 15 p/s: 30 mA mean, six times the fluoroscopy limit
        (FluoroRequest(15.0, 4.0, Technique(75.0, 50.0, 40.0)), "fluoro_max_mean_ma"),
    ],
)
def test_a_fluoroscopy_run_beyond_the_limits_is_refused_before_beam_on(
    request_, limit, run_virtual
):
    async def go() -> None:
        room = sim_room()
        await room.carm.set_technique(Technique(75.0, 25.0, 8.0))
        with pytest.raises(DeviceLimitExceeded) as refused:
            await room.carm.fluoro(request_)
        assert refused.value.limit == limit
        status = await room.carm.status()
        assert status.fluoro_time_s == 0.0 and status.cumulative_reference_air_kerma_mgy == 0.0

    run_virtual(go)


def test_a_tomosynthesis_sweep_beyond_the_limits_is_refused(run_virtual):
    async def go() -> None:
        room = sim_room({"device_limits": ROOM_GENERATOR})
        await room.carm.set_technique(Technique(70.0, 400.0, 100.0))
        sweep = TomoRequest((80.0,), Technique.from_mas(70.0, 200.0, 400.0))
        with pytest.raises(DeviceLimitExceeded, match="max_mas"):
            await room.carm.tomosynthesis(sweep)
        assert (await room.carm.status()).cumulative_reference_air_kerma_mgy == 0.0

    run_virtual(go)


# -- over the wire (the device end of `sim serve`, on a memory link) --------------------------
def test_the_issue_attack_over_the_wire_is_an_interlock_naming_the_limit(run_virtual):
    async def go() -> None:
        async with wired_room() as w:
            # the device's own answer to a raw arm: INTERLOCK, the limit named
            status, fields = await w.services["injector"].handle("arm", program_fields(ATTACK))
            assert status is Status.INTERLOCK
            assert fields["fault"] == LIMIT_FAULT and fields["limit"] == "max_volume_ml"
            assert "max_volume_ml" in str(fields["message"])
            # the reference driver raises the contract's typed error
            with pytest.raises(DeviceLimitExceeded) as refused:
                await w.injector.arm(ATTACK)
            assert refused.value.limit == "max_volume_ml"
            for limit, program in EXCESSES.items():
                with pytest.raises(DeviceLimitExceeded, match=limit):
                    await w.injector.arm(program)
            await nothing_delivered(w.sim)
            remote = await w.injector.status()
            assert remote.state is InjectorState.IDLE and remote.delivered_ml == 0.0
            assert remote.delivered_total_ml == 0.0 and remote.injections_started == 0

    run_virtual(go)


def test_an_exposure_beyond_the_limits_over_the_wire_is_refused_and_none_is_made(run_virtual):
    async def go() -> None:
        async with wired_room() as w:
            w.sim.carm.limits = GeneratorLimits(max_kv=125.0, max_mas=50.0)
            exposures: list[str] = []
            w.sim.carm.subscribe(lambda e: exposures.append(e.kind))
            with pytest.raises(DeviceFault) as refused:
                await w.carm.set_technique(ISSUE_EXPOSURE)
            assert refused.value.fault == LIMIT_FAULT and "max_kv" in str(refused.value)
            with pytest.raises(DeviceStateError):
                await w.carm.expose()  # nothing set: nothing to expose with
            # fluoroscopy brings its own technique: refused before it is accepted
            fluoro = FluoroRequest(3.75, 4.0, Technique(140.0, 25.0, 8.0))
            status, fields = await w.services["carm"].handle(
                "fluoro", {"op_id": 99} | fluoro_fields(fluoro)
            )
            assert status is Status.INTERLOCK and fields["limit"] == "fluoro_max_kv"
            carm = await w.carm.status()
            assert carm.technique is None and carm.cumulative_reference_air_kerma_mgy == 0.0
            assert not {"exposure", "fluoro_started", "technique_set"} & set(exposures)

    run_virtual(go)
