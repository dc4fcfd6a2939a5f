"""The safety kernel: every exposure and injection is checked here before it reaches a driver.

Checks are pure functions of device status and room limits, so they are easy to test and
cannot be bypassed by a driver. Abort goes around everything: injector stop → beam off →
table stop, each step bounded, so a hung device cannot stall the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from drivers import (
    CArmStatus,
    DeviceError,
    InjectionProgram,
    InjectorState,
    InjectorStatus,
    TableStatus,
)
from drivers.backends import DeviceSet

from .room import InjectorLimits

ABORT_STEP_TIMEOUT_S = 0.03  # three steps stay well inside 100 ms


class InterlockRefused(Exception):
    """A command was refused by an interlock; ``reason`` says which and why."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command} refused: {reason}")
        self.command = command
        self.reason = reason


def check_exposure(table: TableStatus, carm: CArmStatus, *, repositioning: bool) -> None:
    if repositioning:
        raise InterlockRefused("expose", "the patient is being repositioned")
    if table.moving:
        raise InterlockRefused("expose", "the table is moving")
    if carm.moving:
        raise InterlockRefused("expose", "the positioner is moving")
    if carm.beam_on:
        raise InterlockRefused("expose", "the beam is already on")
    if carm.technique is None:
        raise InterlockRefused("expose", "no technique set")
    if carm.faults:
        raise InterlockRefused("expose", f"C-arm reports faults: {', '.join(carm.faults)}")


def check_injection_program(program: InjectionProgram, limits: InjectorLimits) -> None:
    if program.max_flow_ml_s > limits.max_flow_ml_s:
        raise InterlockRefused(
            "arm",
            f"flow {program.max_flow_ml_s:g} mL/s exceeds the room limit "
            f"{limits.max_flow_ml_s:g} mL/s for {limits.access}",
        )
    if program.volume_ml > limits.max_volume_ml:
        raise InterlockRefused(
            "arm",
            f"volume {program.volume_ml:g} mL exceeds the room limit {limits.max_volume_ml:g} mL",
        )
    if program.pressure_limit_kpa > limits.max_pressure_kpa:
        raise InterlockRefused(
            "arm",
            f"pressure limit {program.pressure_limit_kpa:.0f} kPa exceeds the room limit "
            f"{limits.max_pressure_kpa:.0f} kPa for {limits.access}",
        )


def check_injection_start(status: InjectorStatus, *, operator_confirmed: bool) -> None:
    if not operator_confirmed:
        raise InterlockRefused("start_injection", "the operator has not confirmed the injection")
    if status.state is not InjectorState.ARMED:
        raise InterlockRefused("start_injection", f"injector is {status.state.value}, not armed")
    if status.started_at_s is not None:
        raise InterlockRefused("start_injection", "an injection was already started in this exam")


@dataclass(frozen=True, slots=True)
class AbortReport:
    confirmed: dict[str, str]  # device role -> "safe" or the error
    duration_s: float


async def abort_all(devices: DeviceSet) -> AbortReport:
    """Injector stop → beam off → table stop; each bounded; never raises."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    confirmed: dict[str, str] = {}
    for role, device in (
        ("injector", devices.injector),
        ("carm", devices.carm),
        ("table", devices.table),
    ):
        try:
            await device.safe_state(timeout_s=ABORT_STEP_TIMEOUT_S)
            confirmed[role] = "safe"
        except (DeviceError, OSError) as exc:
            confirmed[role] = f"unconfirmed: {exc}"
        except Exception as exc:  # a broken driver must not stop the other devices' abort
            confirmed[role] = f"unconfirmed: {type(exc).__name__}: {exc}"
    return AbortReport(confirmed, loop.time() - t0)
