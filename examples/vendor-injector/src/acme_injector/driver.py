"""ACME injector driver over a simulated ACME device.

``AcmeDevice`` stands in for the hardware and its firmware: it keeps its *own* clock (device
seconds = host loop seconds + an unknown offset), runs programs in 0.1 s motor ticks and pushes
status reports. ``AcmeInjector`` is the part a vendor writes for real: the contract's ``_``
hooks, device times mapped onto the host clock, and events published in fluoroctl's names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

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

TICK_S = 0.1  # the device's motor control period; it reports every tick while running
START_DELAY_S = 0.1  # command to first flow: plunger take-up
LINE_KPA_PER_ML_S = 60.0  # pressure per unit flow of the device's line model
_ENDED = (InjectorState.COMPLETED, InjectorState.STOPPED, InjectorState.FAULTED)


@dataclass(frozen=True, slots=True)
class Report:
    """One status report as the device sends it: times on the *device's* clock."""

    device_time_s: float
    state: InjectorState
    delivered_ml: float
    flow_ml_s: float
    phase: int | None
    faults: tuple[InjectorFault, ...] = ()


class AcmeDevice:
    """The simulated hardware. Commands return at once; progress arrives as reports."""

    def __init__(self, clock: Clock, *, clock_offset_s: float = 1000.0) -> None:
        self._clock = clock
        self._offset = clock_offset_s
        self.state = InjectorState.IDLE
        self.program: InjectionProgram | None = None
        self.delivered_per_phase: list[float] = []
        self.phase: int | None = None
        self.flow = 0.0
        self.faults: tuple[InjectorFault, ...] = ()
        self.on_report: Callable[[Report], None] = lambda _r: None
        self.commands: list[str] = []  # every command received, for tests (fire-once)
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        """The device's clock (seconds since its power-on, not the host's)."""
        return self._clock.now() + self._offset

    @property
    def delivered_ml(self) -> float:
        return sum(self.delivered_per_phase)

    def command(self, name: str, program: InjectionProgram | None = None) -> None:
        self.commands.append(name)
        if name == "arm":
            if self.state not in (InjectorState.IDLE, InjectorState.ARMED):
                raise DeviceStateError("acme", "arm", f"cannot arm while {self.state}")
            self.program, self.state = program, InjectorState.ARMED
            self.delivered_per_phase = [0.0] * len(program.phases) if program else []
        elif name == "disarm":
            if self.state in (InjectorState.INJECTING, InjectorState.HOLDING):
                raise DeviceStateError("acme", "disarm", f"cannot disarm while {self.state}")
            self.state, self.program, self.phase, self.faults = InjectorState.IDLE, None, None, ()
            self.delivered_per_phase = []
        elif name == "start":
            if self.state is not InjectorState.ARMED:
                raise DeviceStateError("acme", "start", f"not armed (state {self.state})")
            self.state = InjectorState.INJECTING
            self._task = asyncio.create_task(self._run())
        elif name == "hold" and self.state is InjectorState.INJECTING:
            self.state, self.flow = InjectorState.HOLDING, 0.0
        elif name == "resume" and self.state is InjectorState.HOLDING:
            self.state = InjectorState.INJECTING
        elif name == "stop":
            if self.state in (InjectorState.INJECTING, InjectorState.HOLDING):
                self._end(InjectorState.STOPPED)
            elif self.state is InjectorState.ARMED:
                self.state = InjectorState.IDLE
        elif name not in ("hold", "resume"):
            raise DeviceStateError("acme", name, f"{name} refused while {self.state}")

    def trip(self, fault: InjectorFault) -> None:
        """The device detects ``fault`` (for tests): a running injection halts."""
        self.faults += (fault,)
        self._end(InjectorState.FAULTED)

    def report(self) -> Report:
        return Report(self.now(), self.state, self.delivered_ml, self.flow, self.phase, self.faults)

    async def _run(self) -> None:
        assert self.program is not None
        next_tick = self._clock.now() + START_DELAY_S
        await self._clock.sleep_until(next_tick)
        for index, phase in enumerate(self.program.phases):
            self.phase = index
            waited = 0.0
            while waited < phase.delay_s - 1e-9:
                next_tick += TICK_S
                await self._clock.sleep_until(next_tick)
                waited += TICK_S if self.state is InjectorState.INJECTING else 0.0
            while self.delivered_per_phase[index] < phase.volume_ml - 1e-9:
                self.flow = phase.flow_ml_s if self.state is InjectorState.INJECTING else 0.0
                self.on_report(self.report())  # flow during the coming tick
                next_tick += TICK_S
                await self._clock.sleep_until(next_tick)
                left = phase.volume_ml - self.delivered_per_phase[index]
                self.delivered_per_phase[index] += min(left, self.flow * TICK_S)
                if self.flow * LINE_KPA_PER_ML_S > 1.2 * self.program.pressure_limit_kpa:
                    self.faults += (InjectorFault.OVER_PRESSURE,)
                    self._end(InjectorState.FAULTED)
                    return
        self._end(InjectorState.COMPLETED)

    def _end(self, state: InjectorState) -> None:
        self.state, self.flow = state, 0.0
        self.on_report(self.report())
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()


class AcmeInjector(Injector):
    """The fluoroctl Injector contract for an ACME device."""

    def __init__(self, name: str, device: AcmeDevice, clock: Clock) -> None:
        super().__init__(name)
        self._device, self._clock = device, clock
        # Device time → host loop time. A real driver measures this with a request/reply
        # round trip (midpoint) when it connects and refreshes it with each heartbeat.
        self._offset_s = device.now() - clock.now()
        self._last = device.report()
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._started, self._finished = asyncio.Event(), asyncio.Event()
        device.on_report = self._on_report

    def host_time(self, device_time_s: float) -> float:
        return device_time_s - self._offset_s

    async def aclose(self) -> None:
        self._device.on_report = lambda _r: None

    # -- contract hooks ---------------------------------------------------------------------
    async def _arm(self, program: InjectionProgram) -> None:
        self._refuse_if_faulted("arm")
        self._device.command("arm", program)
        self._last = self._device.report()
        self._emit(
            "armed",
            volume_ml=program.volume_ml,
            max_flow_ml_s=program.max_flow_ml_s,
            concentration_mg_ml=program.concentration_mg_ml,
        )

    async def _disarm(self) -> None:
        previous = self._device.state
        self._device.command("disarm")
        self._last = self._device.report()
        self._started_at = self._ended_at = None
        self._started.clear()
        self._finished.clear()
        self._emit("disarmed", previous_state=previous.value)

    async def _start(self) -> InjectorStatus:
        # Fire-once: exactly one start command, whatever happens next.
        self._refuse_if_faulted("start")
        self._device.command("start")
        self._last = self._device.report()
        self._emit("start_acknowledged")
        return self._snapshot()

    async def _wait_started(self) -> InjectorStatus:
        await self._started.wait()
        return self._snapshot()

    async def _wait_finished(self) -> InjectorStatus:
        await self._finished.wait()
        return self._snapshot()

    async def _hold(self) -> None:
        if self._device.state is not InjectorState.INJECTING:
            raise DeviceStateError(self.name, "hold", f"not injecting ({self._device.state})")
        self._device.command("hold")
        self._emit("held", delivered_ml=self._device.delivered_ml)

    async def _resume(self) -> None:
        if self._device.state is not InjectorState.HOLDING:
            raise DeviceStateError(self.name, "resume", f"not holding ({self._device.state})")
        self._device.command("resume")
        self._emit("resumed", delivered_ml=self._device.delivered_ml)

    async def _stop(self) -> None:
        self._device.command("stop")

    async def _status(self) -> InjectorStatus:
        self._last = self._device.report()
        return self._snapshot()

    # -- device reports ---------------------------------------------------------------------
    def _on_report(self, report: Report) -> None:
        self._last = report
        at = self.host_time(report.device_time_s)
        if self._started_at is None and report.flow_ml_s > 0:
            self._started_at = at
            self._started.set()
            self._emit_at(at, "injection_started", started_at_s=at)
        if report.state in _ENDED:
            self._ended_at = at
            self._finished.set()
            self._emit_at(
                at,
                report.state.value,
                delivered_ml=report.delivered_ml,
                faults=tuple(f.value for f in report.faults),
            )
            return
        self._emit_at(
            at,
            "status",
            state=report.state.value,
            delivered_ml=round(report.delivered_ml, 3),
            flow_ml_s=report.flow_ml_s,
            pressure_kpa=round(report.flow_ml_s * LINE_KPA_PER_ML_S, 1),
            phase=report.phase,
        )

    def _refuse_if_faulted(self, operation: str) -> None:
        if self._device.state is InjectorState.FAULTED and self._started_at is None:
            fault = self._device.faults[-1].value if self._device.faults else "fault"
            raise DeviceFault(self.name, operation, fault, "the injector reports a fault")

    def _snapshot(self) -> InjectorStatus:
        r = self._last
        return InjectorStatus(
            state=r.state,
            delivered_ml=r.delivered_ml,
            flow_ml_s=r.flow_ml_s,
            pressure_kpa=r.flow_ml_s * LINE_KPA_PER_ML_S,
            phase_index=r.phase,
            started_at_s=self._started_at,
            ended_at_s=self._ended_at,
            faults=r.faults,
        )

    def _emit(self, kind: str, **data: object) -> None:
        self._emit_at(self._clock.now(), kind, **data)

    def _emit_at(self, at: float, kind: str, **data: object) -> None:
        self._publish(DeviceEvent(self.name, kind, at, data))
