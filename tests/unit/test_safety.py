import pytest

from drivers import (
    KPA_PER_PSI,
    CArmStatus,
    Clock,
    CollimationField,
    InjectionPhase,
    InjectionProgram,
    InjectorState,
    InjectorStatus,
    PositionerPose,
    TablePosition,
    TableStatus,
    Technique,
)
from drivers.backends import DeviceSet
from drivers.mock import CallLog, MockCArm, MockInjector, MockTable
from scheduler.room import InjectorLimits
from scheduler.safety import (
    InterlockRefused,
    abort_all,
    check_exposure,
    check_injection_program,
    check_injection_start,
)

TECH = Technique(72, 500, 64)


def carm_status(**kw):
    base = dict(
        ready=True,
        beam_on=False,
        technique=TECH,
        pose=PositionerPose(),
        collimation=CollimationField(350, 430),
        moving=False,
    )
    return CArmStatus(**(base | kw))


def table_status(moving=False):
    return TableStatus(TablePosition(), moving)


def test_exposure_allowed_when_still():
    check_exposure(table_status(), carm_status(), repositioning=False)


@pytest.mark.parametrize(
    ("table_moving", "carm_kw", "repositioning", "reason"),
    [
        (True, {}, False, "table is moving"),
        (False, {"moving": True}, False, "positioner is moving"),
        (False, {}, True, "repositioned"),
        (False, {"beam_on": True}, False, "beam is already on"),
        (False, {"technique": None}, False, "no technique"),
        (False, {"faults": ("tube_overheat",)}, False, "tube_overheat"),
    ],
)
def test_exposure_interlocks(table_moving, carm_kw, repositioning, reason):
    with pytest.raises(InterlockRefused, match=reason) as info:
        check_exposure(
            table_status(table_moving), carm_status(**carm_kw), repositioning=repositioning
        )
    assert info.value.command == "expose"


def program(flow=2.0, volume=50.0, psi=300.0):
    return InjectionProgram((InjectionPhase(flow, volume),), psi * KPA_PER_PSI)


def test_injection_limits():
    limits = InjectorLimits(max_flow_ml_s=5, max_volume_ml=150, max_pressure_kpa=2100)
    check_injection_program(program(), limits)
    with pytest.raises(InterlockRefused, match="flow 6 mL/s exceeds"):
        check_injection_program(program(flow=6), limits)
    with pytest.raises(InterlockRefused, match="volume 200 mL exceeds"):
        check_injection_program(
            InjectionProgram((InjectionPhase(2, 100), InjectionPhase(2, 100)), 2000), limits
        )
    with pytest.raises(InterlockRefused, match="pressure limit"):
        check_injection_program(program(psi=325), limits)


def test_injection_start_needs_confirmation_and_armed_state():
    armed = InjectorStatus(InjectorState.ARMED, 0, 0, 0, None, None)
    check_injection_start(armed, operator_confirmed=True)
    with pytest.raises(InterlockRefused, match="not confirmed"):
        check_injection_start(armed, operator_confirmed=False)
    with pytest.raises(InterlockRefused, match="not armed"):
        check_injection_start(
            InjectorStatus(InjectorState.IDLE, 0, 0, 0, None, None), operator_confirmed=True
        )
    with pytest.raises(InterlockRefused, match="already started"):
        check_injection_start(
            InjectorStatus(InjectorState.ARMED, 0, 0, 0, None, 12.0), operator_confirmed=True
        )


def devices(clock, log, hang):
    return DeviceSet(
        carm=MockCArm("carm", clock, log, hang=hang.get("carm")),
        table=MockTable("table", clock, log, hang=hang.get("table")),
        injector=MockInjector("injector", clock, log, hang=hang.get("injector")),
    )


def test_abort_order_injector_beam_table(run_virtual):
    log = CallLog()

    async def main():
        return await abort_all(devices(Clock.for_running_loop(), log, {}))

    report = run_virtual(main)
    assert log.names() == ["stop", "beam_off", "stop"]
    assert [d for _, d, _ in log.calls] == ["injector", "carm", "table"]
    assert report.confirmed == {"injector": "safe", "carm": "safe", "table": "safe"}


def test_abort_bounded_when_devices_hang(run_virtual):
    log = CallLog()

    async def main():
        return await abort_all(
            devices(Clock.for_running_loop(), log, {"injector": {"stop"}, "carm": {"beam_off"}})
        )

    report = run_virtual(main)
    assert report.duration_s <= 0.1
    assert report.confirmed["injector"].startswith("unconfirmed")
    assert report.confirmed["carm"].startswith("unconfirmed")
    assert report.confirmed["table"] == "safe"  # a hung injector does not stop the table's stop
    assert [d for _, d, _ in log.calls] == ["injector", "carm", "table"]
