"""The safety kernel: every exposure and injection is checked here before it reaches a driver.

Checks are pure functions of device status and room limits, so they are easy to test and
cannot be bypassed by a driver. Abort goes around everything: injector stop → beam off →
table stop, each step bounded, so a hung device cannot stall the others.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from drivers import (
    CArm,
    CArmStatus,
    DeviceError,
    InjectionProgram,
    Injector,
    InjectorState,
    InjectorStatus,
    Table,
    TableStatus,
)
from drivers.backends import DeviceSet

from .dose_estimate import entrance_kerma_mgy
from .policy import DoseLimits
from .room import InjectorLimits

ABORT_STEP_TIMEOUT_S = 0.03  # wall s per device: three in-process steps stay inside 100 ms
#: wall s of a device's link allowance granted in an abort (a hung link costs at most this)
ABORT_LINK_ALLOWANCE_S = 0.1


class InterlockRefused(Exception):
    """A command was refused by an interlock; ``reason`` says which and why."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command} refused: {reason}")
        self.command = command
        self.reason = reason
        #: a dose limit refused it: only that acquisition is skipped, the exam goes on
        self.dose = False


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


def check_motion(carm: CArmStatus, what: str) -> None:
    """No table or positioner motion with the beam on."""
    if carm.beam_on:
        raise InterlockRefused(what, "the beam is on")


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
    duration_s: float  # loop time
    wall_duration_s: float


def abort_step_bound_s(device: CArm | Table | Injector, time_scale: float) -> float:
    """One device's share of an abort, in wall seconds.

    A safe-state command is answered in a millisecond by a healthy device; the bound is there
    for the one that will never answer. A device on a real link gets part of its link
    allowance (the cable is no faster in a rehearsal), never more than
    ``ABORT_LINK_ALLOWANCE_S``, so a hung injector cannot hold the beam-off back for long.
    """
    link_wall_s = device.latency_allowance_s / time_scale if time_scale > 0 else 0.0
    return ABORT_STEP_TIMEOUT_S + min(link_wall_s, ABORT_LINK_ALLOWANCE_S)


async def abort_all(devices: DeviceSet, *, time_scale: float = 1.0) -> AbortReport:
    """Injector stop → beam off → table stop; each bounded; never raises.

    The bounds are wall-clock durations: on a loop that runs ``time_scale`` times faster than
    the wall (a rehearsal at 60×), a bound of 30 ms is 1.8 s of loop time. On virtual time
    (everything in-process, ``time_scale`` 1) loop time is the simulated wall.

    Each step is bounded by the device's own timeout *and* by an outer ``asyncio.timeout``,
    so even a driver that ignores its bound cannot hold up the next device. Callers that must
    not be interrupted (the exam runner) run this in a task of its own and shield it.
    """
    loop = asyncio.get_running_loop()
    t0, w0 = loop.time(), time.monotonic()
    confirmed: dict[str, str] = {}
    for role, device in (
        ("injector", devices.injector),
        ("carm", devices.carm),
        ("table", devices.table),
    ):
        bound_wall = abort_step_bound_s(device, time_scale)
        try:
            async with asyncio.timeout(bound_wall * time_scale * 1.1):
                await device.safe_state(timeout_s=ABORT_STEP_TIMEOUT_S * time_scale)
            confirmed[role] = "safe"
        except TimeoutError:
            confirmed[role] = f"unconfirmed: no answer within {bound_wall * 1000:.0f} ms"
        except (DeviceError, OSError) as exc:
            confirmed[role] = f"unconfirmed: {exc}"
        except Exception as exc:  # a broken driver must not stop the other devices' abort
            confirmed[role] = f"unconfirmed: {type(exc).__name__}: {exc}"
    return AbortReport(confirmed, loop.time() - t0, time.monotonic() - w0)


@dataclass(frozen=True, slots=True)
class DoseNotice:
    kind: str  # fluoro_timer_alert | air_kerma_notification | dose_rate_exceeded
    message: str
    value: float


def fluoro_run_time_s(pulses: int, pulse_rate_hz: float) -> float:
    """A pulsed run's fluoroscopy time as a regulator counts it: its pulses × the pulse
    period, the time the run held the beam switched on (gaps between pulses included).

    21 CFR 1020.30(b) defines *fluoroscopic irradiation time* as the cumulative duration of
    operator-applied pressure enabling x-ray tube activation in any fluoroscopic mode: the
    pedal time, not the sum of pulse widths. A run of ``n`` pulses at ``r`` per second held
    the pedal ``n / r`` seconds. Counted over the frames stored: pulses whose frames the
    detector lost (a ``frames_dropped`` fault) are not counted.
    """
    if pulses <= 0 or pulse_rate_hz <= 0:
        return 0.0
    return pulses / pulse_rate_hz


class DoseMonitor:
    """Cumulative fluoroscopy time and reference air kerma against the room's dose limits.

    ``check_*`` raise :class:`InterlockRefused` before a command; :meth:`add` books what an
    acquisition delivered and returns the notices it crossed: an alert at each passage of
    ``fluoro_alert_interval_s`` of fluoroscopy time (5 min, 21 CFR 1020.32(h)(2)), the
    air-kerma notification levels (3 Gy then every 1 Gy by default, NCRP 168 practice), the
    substantial radiation dose level (5 Gy reference air kerma, NCRP 168), a measured
    air-kerma rate above the limit.

    Reference air kerma is the air kerma at the IEC 60601-2-43 patient entrance reference
    point (15 cm from the isocentre toward the source), without backscatter: what the C-arm
    reports per frame.
    """

    def __init__(self, limits: DoseLimits, fluoro_s: float = 0.0, rak_mgy: float = 0.0) -> None:
        self.limits = limits
        self.fluoro_s = fluoro_s
        self.rak_mgy = rak_mgy
        self.fluoro_locked: str | None = None

    def estimated_rate_mgy_min(
        self, kv: float, ma: float, pulse_ms: float, rate_hz: float
    ) -> float:
        return entrance_kerma_mgy(kv, ma * pulse_ms / 1000.0) * rate_hz * 60.0

    def check_fluoro(
        self, duration_s: float, kv: float, ma: float, pulse_ms: float, rate_hz: float
    ) -> None:
        """Refuse a run of ``duration_s`` (its fluoroscopy time: the whole run, not its
        pulse widths) that would pass the room's limits."""
        lim = self.limits
        if self.fluoro_locked:
            raise InterlockRefused("fluoro", self.fluoro_locked)
        if self.fluoro_s + duration_s > lim.max_fluoro_time_s:
            raise InterlockRefused(
                "fluoro",
                f"cumulative fluoroscopy time would reach {self.fluoro_s + duration_s:.1f} s "
                f"(room limit {lim.max_fluoro_time_s:g} s)",
            )
        rate = self.estimated_rate_mgy_min(kv, ma, pulse_ms, rate_hz)
        if rate > lim.max_air_kerma_rate_mgy_min:
            raise InterlockRefused(
                "fluoro",
                f"estimated air-kerma rate {rate:.0f} mGy/min exceeds the room limit "
                f"{lim.max_air_kerma_rate_mgy_min:g} mGy/min",
            )
        self.check_exposure_dose("fluoro")

    def check_exposure_dose(self, command: str = "expose") -> None:
        cap = self.limits.max_reference_air_kerma_mgy
        if cap is not None and self.rak_mgy >= cap:
            raise InterlockRefused(
                command,
                f"cumulative reference air kerma {self.rak_mgy:.0f} mGy reached the room's "
                f"stop level {cap:g} mGy",
            )

    def add(self, rak_mgy: float, fluoro_s: float = 0.0, run_s: float = 0.0) -> list[DoseNotice]:
        """Book one acquisition: ``rak_mgy`` reference air kerma, ``fluoro_s`` fluoroscopy
        time (:func:`fluoro_run_time_s`; 0 for radiography), ``run_s`` the run's duration for
        the measured air-kerma rate. Returns the notices crossed."""
        lim = self.limits
        notices: list[DoseNotice] = []
        before_f, before_k = self.fluoro_s, self.rak_mgy
        self.fluoro_s += fluoro_s
        self.rak_mgy += rak_mgy
        step = lim.fluoro_alert_interval_s
        for n in range(int(before_f // step) + 1, int(self.fluoro_s // step) + 1):
            notices.append(
                DoseNotice(
                    "fluoro_timer_alert",
                    f"{n * step / 60:g} min of fluoroscopy: audible alert, reset to continue",
                    self.fluoro_s,
                )
            )
        first, every = lim.air_kerma_notify_mgy, lim.air_kerma_notify_step_mgy

        def level(k: float) -> int:  # 0 below the first level, then 1, 2, ...
            return 0 if k < first else 1 + int((k - first) // every)

        for n in range(level(before_k) + 1, level(self.rak_mgy) + 1):
            notices.append(
                DoseNotice(
                    "air_kerma_notification",
                    f"reference air kerma passed {first + (n - 1) * every:g} mGy",
                    self.rak_mgy,
                )
            )
        srdl = lim.substantial_dose_level_mgy
        if srdl is not None and before_k < srdl <= self.rak_mgy:
            notices.append(
                DoseNotice(
                    "air_kerma_notification",
                    f"reference air kerma passed {srdl:g} mGy: substantial radiation dose "
                    "level (NCRP 168), the patient is to be followed up",
                    self.rak_mgy,
                )
            )
        if fluoro_s > 0 and run_s > 0:
            rate = rak_mgy / run_s * 60.0
            if rate > lim.max_air_kerma_rate_mgy_min:
                self.fluoro_locked = (
                    f"measured air-kerma rate {rate:.0f} mGy/min exceeded the room limit "
                    f"{lim.max_air_kerma_rate_mgy_min:g} mGy/min"
                )
                notices.append(DoseNotice("dose_rate_exceeded", self.fluoro_locked, rate))
        return notices
