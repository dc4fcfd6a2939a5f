"""Simulated power injector: programmed phases with a rise time, pressure from a line model.

Flow follows a piecewise-linear profile planned when the injection starts (and re-planned on
resume); delivered volume is its exact integral, so the patient receives exactly what the
status reports. Pressure is flow × line resistance (Hagen–Poiseuille, see patient.py) with a
first-order lag for tubing compliance. Like a MEDRAD Salient [S91], the injector halts with
an over-pressure fault above 120 % of the programmed limit.
"""

from __future__ import annotations

import asyncio
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
    def __init__(self, name: str, clock: Clock, patient: SimPatient) -> None:
        super().__init__(name)
        self._clock = clock
        self._patient = patient
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
        self._program = program
        self._delivered_per_phase = [0.0] * len(program.phases)
        self._state = InjectorState.ARMED
        self._emit("armed", volume_ml=program.volume_ml, max_flow_ml_s=program.max_flow_ml_s)

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
        self._state = InjectorState.INJECTING
        flow_start = self._clock.now() + START_LATENCY_S
        self._plan(flow_start)
        self._last_tick = flow_start
        self._task = asyncio.create_task(self._run(flow_start))
        self._emit("start_acknowledged")
        return self._snapshot()

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

    # -- internals ----------------------------------------------------------------------
    def _new_injection(self) -> None:
        """Forget the ended injection: nothing delivered, no times, no faults, no program."""
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
            self._emit("injection_started", started_at_s=self._started_at)
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
        )

    def _status_data(self) -> dict[str, object]:
        return {
            "state": self._state.value,
            "delivered_ml": round(self._delivered_ml, 3),
            "flow_ml_s": round(self._flow, 3),
            "pressure_kpa": round(self._pressure_kpa, 1),
            "phase": self._phase,
        }

    def _emit(self, kind: str, **data: object) -> None:
        self._publish(DeviceEvent(self.name, kind, self._clock.now(), data))
