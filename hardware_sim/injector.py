"""Simulated power injector: programmed phases with a rise time, pressure from a line model.

Flow follows a piecewise-linear profile planned when the injection starts (and re-planned on
resume); delivered volume is its exact integral, so the patient receives exactly what the
status reports. Pressure is flow × line resistance (Hagen–Poiseuille, see patient.py) with a
first-order lag for tubing compliance. Like a MEDRAD Salient [S91], the injector halts with
an over-pressure fault above 120 % of the programmed limit.

The injector holds its own hard limits (:mod:`hardware_sim.limits`): a program beyond them is
refused at ``arm`` whatever the host says. It counts what it delivered and how many
injections it started since it was reset, over every arm (``delivered_total_ml``,
``injections_started`` in its status and events), so the host can tell an injection it did
not command: :meth:`SimInjector.local_start` is someone pressing start at the injector.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers import (
    Clock,
    DeviceEvent,
    DeviceFault,
    DeviceStateError,
    InjectionProgram,
    Injector,
    InjectorFault,
    InjectorState,
    InjectorStatus,
)
from drivers.errors import DeviceLimitExceeded

from .limits import InjectorDeviceLimits, check_program

if TYPE_CHECKING:
    from .patient import SimPatient

_ENDED = (InjectorState.COMPLETED, InjectorState.STOPPED, InjectorState.FAULTED)
STATUS_PERIOD_S = 0.1  # status broadcast at 10 Hz while injecting
START_LATENCY_S = 0.08  # command to first flow: motor and plunger take-up
COMPLIANCE_TAU_S = 0.3  # tubing/syringe compliance smooths pressure


@dataclass(frozen=True, slots=True)
class _Segment:
    t0: float
    t1: float
    f0: float
    f1: float
    phase: int

    def volume(self, t: float) -> float:
        """Volume delivered in this segment up to time t (trapezoid of a linear ramp)."""
        if t <= self.t0:
            return 0.0
        t = min(t, self.t1)
        span = self.t1 - self.t0
        f_t = self.f0 + (self.f1 - self.f0) * ((t - self.t0) / span if span > 0 else 1.0)
        return 0.5 * (self.f0 + f_t) * (t - self.t0)

    def flow(self, t: float) -> float:
        if not (self.t0 <= t < self.t1):
            return 0.0
        span = self.t1 - self.t0
        return self.f0 + (self.f1 - self.f0) * ((t - self.t0) / span if span > 0 else 1.0)


def plan_profile(
    start: float,
    remaining_ml: list[float],
    flows: list[float],
    delays: list[float],
    rise_s: float,
    first_phase: int,
) -> list[_Segment]:
    """Segments delivering ``remaining_ml`` per phase; ramps between flows last ``rise_s``."""
    segments: list[_Segment] = []
    t = start
    current = 0.0
    for offset, (volume, flow, delay) in enumerate(zip(remaining_ml, flows, delays, strict=True)):
        phase = first_phase + offset
        if volume <= 1e-9:
            continue
        if delay > 0:
            if current > 0:
                ramp = rise_s * current / max(flow, current)
                segments.append(_Segment(t, t + ramp, current, 0.0, phase))
                volume -= 0.5 * current * ramp
                t += ramp
                current = 0.0
            segments.append(_Segment(t, t + delay, 0.0, 0.0, phase))
            t += delay
        ramp = rise_s * abs(flow - current) / max(flow, current, 1e-9)
        ramp_volume = 0.5 * (current + flow) * ramp
        if ramp_volume >= volume:
            # Too little volume to reach full flow: ramp only as far as the volume allows.
            # Solve v = f0*t + 0.5*a*t² for t with a = (flow-current)/ramp.
            a = (flow - current) / ramp if ramp > 0 else 0.0
            dt = (
                volume / current
                if a == 0
                else (-current + math.sqrt(current**2 + 2 * a * volume)) / a
            )
            end_flow = current + a * dt
            segments.append(_Segment(t, t + dt, current, end_flow, phase))
            t += dt
            current = end_flow
            continue
        if ramp > 0:
            segments.append(_Segment(t, t + ramp, current, flow, phase))
            t += ramp
        steady = (volume - ramp_volume) / flow
        segments.append(_Segment(t, t + steady, flow, flow, phase))
        t += steady
        current = flow
    return segments


class SimInjector(Injector):
    def __init__(
        self,
        name: str,
        clock: Clock,
        patient: SimPatient,
        limits: InjectorDeviceLimits | None = None,
    ) -> None:
        super().__init__(name)
        self._clock = clock
        self._patient = patient
        #: the injector's own hard limits (its configuration, not the host's)
        self.limits = limits or InjectorDeviceLimits()
        #: delivered by, and injections started in, earlier arms since the device was reset
        self._total_before_ml = 0.0
        self._starts_before = 0
        #: this arm's program was started (by the host or at the injector)
        self._arm_started = False
        #: the program last loaded: what a local start runs again after an injection ended
        self._last_program: InjectionProgram | None = None
        self._state = InjectorState.IDLE
        self._program: InjectionProgram | None = None
        self._segments: list[_Segment] = []
        self._delivered_before_ml = 0.0  # volume of earlier (pre-hold) plans
        self._delivered_per_phase: list[float] = []
        self._delivered_ml = 0.0
        self._pressure_kpa = 0.0
        self._flow = 0.0
        self._phase: int | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._faults: tuple[InjectorFault, ...] = ()
        self._last_tick = clock.now()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._finished = asyncio.Event()
        self._pending_fault: tuple[float, InjectorFault] | None = None

    # -- test / fault-injection hooks -------------------------------------------------
    def inject_fault_at(self, t: float, fault: InjectorFault) -> None:
        self._pending_fault = (t, fault)

    @property
    def injection_started_at(self) -> float | None:
        """Loop time contrast began to flow, once it has."""
        return self._started_at

    @property
    def delivered_total_ml(self) -> float:
        """Contrast delivered since the device was reset, over every arm."""
        return self._total_before_ml + self._delivered_ml

    @property
    def injections_started(self) -> int:
        """Injections started since the device was reset (commanded or local)."""
        return self._starts_before + (1 if self._arm_started or self._started_at else 0)

    def local_start(self) -> str:
        """Someone presses start on the injector itself (fault injection: an injection the
        host did not command). Returns what happened, in words.

        Armed: the loaded program starts. Holding: flow resumes. After an injection ended:
        the last program is loaded again and started (a new arm; the counters go on). Idle
        with nothing loaded, faulted before a start, or already injecting: nothing happens.
        The injector's own limits still hold: a start beyond them is refused.
        """
        if self._state is InjectorState.INJECTING:
            return "already injecting: nothing happens"
        if self._state is InjectorState.HOLDING:
            self._state = InjectorState.INJECTING
            self._plan(self._clock.now())
            self._emit("resumed", delivered_ml=self._delivered_ml, local=True)
            return "held injection resumed at the injector"
        if self._state is InjectorState.FAULTED and self._started_at is None:
            return "faulted: the injector refuses to start"
        program = self._program if self._state is InjectorState.ARMED else self._last_program
        if program is None:
            return "no program loaded: nothing happens"
        try:
            check_program(
                self.limits,
                program,
                self.name,
                "local_start",
                # an ended arm's volume is added to the total only when the next arm starts
                self.delivered_total_ml if self._state in _ENDED else self._total_before(),
            )
        except DeviceLimitExceeded as exc:
            self._emit("local_start_refused", reason=exc.reason)
            return f"refused by the injector's limits: {exc.reason}"
        if self._state is not InjectorState.ARMED:
            if self._state in _ENDED:
                self._new_injection()
            self._load(program)
        self._begin()
        self._emit("local_start", volume_ml=program.volume_ml, **self._counters())
        return f"{program.volume_ml:g} mL started at the injector"

    def trip(self, fault: InjectorFault) -> None:
        """The injector detects ``fault`` now (fault injection).

        Injecting or holding: flow stops at once and the injector faults, as a real one
        halts on over-pressure, air, occlusion or a motor stall. Idle or armed: it faults and
        refuses to arm or start. After the injection ended: the fault is reported only.
        """
        if self._state in (InjectorState.INJECTING, InjectorState.HOLDING):
            self._sync(self._clock.now())
            self._faults += (fault,)
            self._finish(InjectorState.FAULTED)
        elif self._state in (InjectorState.IDLE, InjectorState.ARMED):
            self._faults += (fault,)
            self._state = InjectorState.FAULTED
            self._emit("faulted", delivered_ml=self._delivered_ml, faults=(fault.value,))
        else:
            self._faults += (fault,)
            self._emit("fault_reported", fault=fault.value, state=self._state.value)

    # -- contract -----------------------------------------------------------------------
    async def _arm(self, program: InjectionProgram) -> None:
        self._refuse_if_faulted("arm")
        if self._state in (InjectorState.INJECTING, InjectorState.HOLDING):
            raise DeviceStateError(self.name, "arm", f"cannot arm while {self._state}")
        if self._state in _ENDED:
            # Its start time and volume would pass for the new injection's: a new exam's
            # films would be timed from the previous patient's injection.
            raise DeviceStateError(
                self.name, "arm", f"the previous injection has ended ({self._state}); disarm first"
            )
        # The device's own limits, whatever the host checked: refused before anything changes.
        check_program(self.limits, program, self.name, "arm", self._total_before())
        self._load(program)
        self._emit("armed", volume_ml=program.volume_ml, max_flow_ml_s=program.max_flow_ml_s)

    def _load(self, program: InjectionProgram) -> None:
        self._program = program
        self._last_program = program
        self._delivered_per_phase = [0.0] * len(program.phases)
        self._state = InjectorState.ARMED

    async def _disarm(self) -> None:
        """Back to IDLE. After an injection ended (completed, stopped, faulted) this is a new
        syringe and program: delivered volume, start and end times and faults are cleared
        (the patient keeps what was given). Refused while injecting or holding."""
        if self._state in (InjectorState.INJECTING, InjectorState.HOLDING):
            raise DeviceStateError(
                self.name, "disarm", f"cannot disarm while {self._state}; stop the injection first"
            )
        previous = self._state
        if previous in _ENDED:
            self._new_injection()
        self._state = InjectorState.IDLE
        self._emit("disarmed", previous_state=previous.value)

    async def _start(self) -> InjectorStatus:
        self._refuse_if_faulted("start")
        if self._state is not InjectorState.ARMED or self._program is None:
            raise DeviceStateError(self.name, "start", f"not armed (state {self._state})")
        self._begin()
        self._emit("start_acknowledged", **self._counters())
        return self._snapshot()

    def _begin(self) -> None:
        """The armed program starts: flow after the motor's take-up."""
        self._state = InjectorState.INJECTING
        self._arm_started = True
        flow_start = self._clock.now() + START_LATENCY_S
        self._plan(flow_start)
        self._last_tick = flow_start
        self._task = asyncio.create_task(self._run(flow_start))

    async def _wait_started(self) -> InjectorStatus:
        await self._started.wait()
        return self._snapshot()

    async def _wait_finished(self) -> InjectorStatus:
        await self._finished.wait()
        return self._snapshot()

    async def _hold(self) -> None:
        if self._state is not InjectorState.INJECTING:
            raise DeviceStateError(self.name, "hold", f"not injecting (state {self._state})")
        self._sync(self._clock.now())
        self._bank_plan()
        self._state = InjectorState.HOLDING
        self._emit("held", delivered_ml=self._delivered_ml)

    async def _resume(self) -> None:
        if self._state is not InjectorState.HOLDING:
            raise DeviceStateError(self.name, "resume", f"not holding (state {self._state})")
        self._state = InjectorState.INJECTING
        self._plan(self._clock.now())
        self._emit("resumed", delivered_ml=self._delivered_ml)

    async def _stop(self) -> None:
        # Idempotent and instantaneous: the motor stops; nothing after this delivers contrast.
        if self._state in (InjectorState.INJECTING, InjectorState.HOLDING):
            self._sync(self._clock.now())
            self._finish(InjectorState.STOPPED)
        elif self._state is InjectorState.ARMED:
            self._state = InjectorState.IDLE
            self._emit("disarmed")

    async def _status(self) -> InjectorStatus:
        if self._state is InjectorState.INJECTING:
            self._sync(self._clock.now())
        return self._snapshot()

    async def aclose(self) -> None:
        """The simulated room closes: the running injection's clock stops with it, so the
        room leaves no task behind on its loop."""
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- internals ----------------------------------------------------------------------
    def _new_injection(self) -> None:
        """Forget the ended injection: nothing delivered, no times, no faults, no program.
        The since-reset counters keep what it delivered and that it started."""
        self._total_before_ml += self._delivered_ml
        self._starts_before += 1 if self._arm_started or self._started_at else 0
        self._arm_started = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self._program = None
        self._segments = []
        self._delivered_before_ml = 0.0
        self._delivered_per_phase = []
        self._delivered_ml = 0.0
        self._pressure_kpa = 0.0
        self._flow = 0.0
        self._phase = None
        self._started_at = None
        self._ended_at = None
        self._faults = ()
        self._pending_fault = None
        self._started.clear()
        self._finished.clear()
        self._last_tick = self._clock.now()

    def _total_before(self) -> float:
        """Delivered since the reset by arms other than the one now loaded."""
        return self._total_before_ml

    def _counters(self) -> dict[str, object]:
        return {
            "delivered_total_ml": round(self.delivered_total_ml, 3),
            "injections_started": self.injections_started,
        }

    def _refuse_if_faulted(self, operation: str) -> None:
        if self._state is InjectorState.FAULTED and self._started_at is None:
            fault = self._faults[-1].value if self._faults else "fault"
            raise DeviceFault(self.name, operation, fault, "the injector reports a fault")

    def _plan(self, start: float) -> None:
        assert self._program is not None
        program = self._program
        remaining = [
            p.volume_ml - d for p, d in zip(program.phases, self._delivered_per_phase, strict=True)
        ]
        first = next((i for i, r in enumerate(remaining) if r > 1e-9), len(remaining))
        self._segments = plan_profile(
            start,
            remaining[first:],
            [p.flow_ml_s for p in program.phases[first:]],
            # a phase's delay applies once, before it first delivers
            [
                p.delay_s if self._delivered_per_phase[i] == 0 else 0.0
                for i, p in enumerate(program.phases)
                if i >= first
            ],
            program.rise_time_s,
            first,
        )

    def _plan_volume(self, t: float) -> float:
        return sum(seg.volume(t) for seg in self._segments)

    def _bank_plan(self) -> None:
        self._delivered_before_ml = self._delivered_ml
        self._segments = []

    def _sync(self, t: float) -> None:
        """Bring delivered volume, flow, pressure and the patient up to loop time ``t``."""
        if t <= self._last_tick or self._program is None:
            return
        previous = self._delivered_ml
        self._delivered_ml = self._delivered_before_ml + self._plan_volume(t)
        delta = max(0.0, self._delivered_ml - previous)
        seg = next((s for s in self._segments if s.t0 <= t < s.t1), None)
        self._flow = seg.flow(t) if seg else 0.0
        if seg is not None:
            self._phase = seg.phase
            self._delivered_per_phase[seg.phase] += delta
        elif self._phase is not None and delta > 0:
            self._delivered_per_phase[self._phase] += delta
        if self._started_at is None and self._flow > 0:
            self._started_at = self._first_flow_time()
            self._started.set()
            self._emit("injection_started", started_at_s=self._started_at, **self._counters())
        target_p = self._flow * self._patient.line_resistance_kpa_s_ml
        alpha = 1.0 - math.exp(-(t - self._last_tick) / COMPLIANCE_TAU_S)
        self._pressure_kpa += (target_p - self._pressure_kpa) * alpha
        self._patient.infuse_until(t, delta * self._program.concentration_mg_ml)
        self._last_tick = t

    def _first_flow_time(self) -> float:
        return next(s.t0 for s in self._segments if s.f0 > 0 or s.f1 > 0)

    async def _run(self, flow_start: float) -> None:
        assert self._program is not None
        next_tick = flow_start
        while self._state in (InjectorState.INJECTING, InjectorState.HOLDING):
            next_tick += STATUS_PERIOD_S
            await self._clock.sleep_until(next_tick)
            now = self._clock.now()
            if self._state is InjectorState.INJECTING:
                self._sync(now)
                if self._pending_fault and now >= self._pending_fault[0]:
                    self._faults += (self._pending_fault[1],)
                    self._pending_fault = None
                    self._finish(InjectorState.FAULTED)
                    return
                if self._pressure_kpa > 1.2 * self._program.pressure_limit_kpa:
                    self._faults += (InjectorFault.OVER_PRESSURE,)
                    self._finish(InjectorState.FAULTED)
                    return
                if not self._segments or now >= self._segments[-1].t1:
                    self._sync(self._segments[-1].t1 if self._segments else now)
                    self._finish(InjectorState.COMPLETED)
                    return
            self._publish(DeviceEvent(self.name, "status", now, self._status_data()))

    def _finish(self, state: InjectorState) -> None:
        self._state = state
        self._flow = 0.0
        self._ended_at = self._clock.now()
        self._segments = []
        self._delivered_before_ml = self._delivered_ml
        self._finished.set()
        self._emit(
            state.value,
            delivered_ml=self._delivered_ml,
            faults=tuple(f.value for f in self._faults),
            **self._counters(),
        )
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def _snapshot(self) -> InjectorStatus:
        return InjectorStatus(
            state=self._state,
            delivered_ml=self._delivered_ml,
            flow_ml_s=self._flow,
            pressure_kpa=self._pressure_kpa,
            phase_index=self._phase,
            started_at_s=self._started_at,
            ended_at_s=self._ended_at,
            faults=self._faults,
            delivered_total_ml=self.delivered_total_ml,
            injections_started=self.injections_started,
        )

    def _status_data(self) -> dict[str, object]:
        return {
            "state": self._state.value,
            "delivered_ml": round(self._delivered_ml, 3),
            "flow_ml_s": round(self._flow, 3),
            "pressure_kpa": round(self._pressure_kpa, 1),
            "phase": self._phase,
        } | self._counters()

    def _emit(self, kind: str, **data: object) -> None:
        self._publish(DeviceEvent(self.name, kind, self._clock.now(), data))
