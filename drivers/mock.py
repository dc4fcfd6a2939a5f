"""Mock devices: instant, deterministic, and they record every call.

Not a simulator (no physics, no realistic timing): for testing the scheduler's logic.
``mock://`` links open them; tests can also build them directly and script failures.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from .backends import DeviceSet, RoomRequest
from .carm import (
    CArm,
    CArmCapabilities,
    CArmStatus,
    CollimationField,
    Dose,
    FluoroRequest,
    FluoroRun,
    Frame,
    PanelMode,
    PositionerPose,
    Technique,
    TomoRequest,
    TomoSeries,
)
from .clock import Clock
from .errors import DeviceStateError
from .injector import InjectionProgram, Injector, InjectorState, InjectorStatus
from .table import Table, TablePosition, TableStatus


@dataclass
class CallLog:
    calls: list[tuple[float, str, str]] = field(default_factory=list)  # (loop time, device, call)

    def add(self, clock: Clock, device: str, call: str) -> None:
        self.calls.append((clock.now(), device, call))

    def names(self, device: str | None = None) -> list[str]:
        return [c for _, d, c in self.calls if device is None or d == device]


class MockCArm(CArm):
    def __init__(
        self, name: str, clock: Clock, log: CallLog, *, hang: set[str] | None = None
    ) -> None:
        super().__init__(name)
        self._clock, self._log = clock, log
        self.technique: Technique | None = None
        self.pose = PositionerPose()
        self.collimation = CollimationField(350, 430)
        self.beam_on = False
        self.hang = hang or set()  # calls that never return (to test bounds)
        #: what it declares; a test may give it a latency or a timed trigger (then
        #: ``expose(at_s=T)`` returns its frame stamped T, logged as ``expose_at``)
        self.caps = CArmCapabilities()

    async def _call(self, name: str) -> None:
        self._log.add(self._clock, self.name, name)
        if name in self.hang:
            await asyncio.Event().wait()

    async def _set_technique(self, technique: Technique) -> None:
        await self._call("set_technique")
        self.technique = technique

    async def _move_positioner(self, pose: PositionerPose) -> None:
        await self._call("move_positioner")
        self.pose = pose

    async def _set_collimation(self, collimation: CollimationField) -> None:
        await self._call("set_collimation")
        self.collimation = collimation

    def _frame(self) -> Frame:
        assert self.technique is not None
        return Frame(
            np.full((64, 64), 1000, np.uint16),
            0.4,
            self._clock.now(),
            self.technique,
            self.pose,
            self.collimation,
            Dose(0.5, 0.6, 0.1),
        )

    async def _expose(self) -> Frame:
        await self._call("expose")
        if self.technique is None:
            raise DeviceStateError(self.name, "expose", "no technique set")
        return self._frame()

    async def _capabilities(self) -> CArmCapabilities:
        return self.caps

    async def _expose_at(self, at_s: float) -> Frame:
        if not self.caps.timed_trigger:
            return await super()._expose_at(at_s)
        await self._call("expose_at")
        if self.technique is None:
            raise DeviceStateError(self.name, "expose", "no technique set")
        await self._clock.sleep_until(at_s)
        return self._frame()

    async def _fluoro(self, request: FluoroRequest) -> FluoroRun:
        await self._call("fluoro")
        self.technique = request.technique
        now = self._clock.now()
        frames = tuple(self._frame() for _ in range(request.n_pulses))
        return FluoroRun(frames, request.pulse_rate_hz, now, now)

    async def _tomosynthesis(self, request: TomoRequest) -> TomoSeries:
        await self._call("tomosynthesis")
        self.technique = request.technique
        now = self._clock.now()
        layers = tuple(self._frame() for _ in request.layer_heights_mm)
        return TomoSeries(
            layers, request.layer_heights_mm, request.sweep_deg, request.projections, now, now
        )

    def panel_modes(self) -> tuple[PanelMode, ...]:
        return (PanelMode("radiography", 64, 64, 1, 0.4),)

    async def _calibration_frames(self, mode: str, kind: str, count: int) -> tuple[Frame, ...]:
        await self._call(f"calibration_frames:{kind}")
        if mode != "radiography":
            raise DeviceStateError(self.name, "calibration_frames", f"no panel mode {mode!r}")
        value = 100 if kind == "dark" else 1100
        technique = Technique(70.0, 100.0, 100.0)
        return tuple(
            Frame(
                np.full((64, 64), value, np.uint16),
                0.4,
                self._clock.now(),
                technique,
                self.pose,
                self.collimation,
                Dose(0.0, 0.0, 0.0),
            )
            for _ in range(count)
        )

    async def _beam_off(self) -> None:
        await self._call("beam_off")
        self.beam_on = False

    async def _status(self) -> CArmStatus:
        return CArmStatus(True, self.beam_on, self.technique, self.pose, self.collimation, False)


class MockTable(Table):
    def __init__(
        self, name: str, clock: Clock, log: CallLog, *, hang: set[str] | None = None
    ) -> None:
        super().__init__(name)
        self._clock, self._log = clock, log
        self.position = TablePosition()
        self.moving = False
        self.hang = hang or set()

    async def _move_to(self, target: TablePosition) -> TableStatus:
        self._log.add(self._clock, self.name, "move_to")
        if "move_to" in self.hang:
            await asyncio.Event().wait()
        self.position = target
        return TableStatus(target, False, self._clock.now())

    async def _stop(self) -> None:
        self._log.add(self._clock, self.name, "stop")
        if "stop" in self.hang:
            await asyncio.Event().wait()
        self.moving = False

    async def _status(self) -> TableStatus:
        return TableStatus(self.position, self.moving, self._clock.now())


_ENDED = (InjectorState.COMPLETED, InjectorState.STOPPED, InjectorState.FAULTED)


class MockInjector(Injector):
    def __init__(
        self, name: str, clock: Clock, log: CallLog, *, hang: set[str] | None = None
    ) -> None:
        super().__init__(name)
        self._clock, self._log = clock, log
        self.state = InjectorState.IDLE
        self.program: InjectionProgram | None = None
        self.started_at: float | None = None
        self.hang = hang or set()

    async def _call(self, name: str) -> None:
        self._log.add(self._clock, self.name, name)
        if name in self.hang:
            await asyncio.Event().wait()

    async def _arm(self, program: InjectionProgram) -> None:
        await self._call("arm")
        if self.state in (InjectorState.INJECTING, InjectorState.HOLDING, *_ENDED):
            raise DeviceStateError(self.name, "arm", f"cannot arm while {self.state}")
        self.program, self.state = program, InjectorState.ARMED

    async def _disarm(self) -> None:
        """As the simulated injector: an ended injection is forgotten (new syringe and
        program); refused while injecting or holding."""
        await self._call("disarm")
        if self.state in (InjectorState.INJECTING, InjectorState.HOLDING):
            raise DeviceStateError(self.name, "disarm", f"cannot disarm while {self.state}")
        self.state, self.program, self.started_at = InjectorState.IDLE, None, None

    async def _start(self) -> InjectorStatus:
        await self._call("start")
        if self.state is not InjectorState.ARMED:
            raise DeviceStateError(self.name, "start", f"not armed (state {self.state})")
        self.state, self.started_at = InjectorState.COMPLETED, self._clock.now()
        return await self._status()

    async def _wait_started(self) -> InjectorStatus:
        return await self._status()

    async def _wait_finished(self) -> InjectorStatus:
        return await self._status()

    async def _hold(self) -> None:
        await self._call("hold")

    async def _resume(self) -> None:
        await self._call("resume")

    async def _stop(self) -> None:
        await self._call("stop")
        # as the simulated injector: a running injection stops; an armed one is disarmed
        if self.state in (InjectorState.INJECTING, InjectorState.HOLDING):
            self.state = InjectorState.STOPPED
        elif self.state is InjectorState.ARMED:
            self.state = InjectorState.IDLE

    async def _status(self) -> InjectorStatus:
        delivered = self.program.volume_ml if self.started_at is not None and self.program else 0.0
        return InjectorStatus(self.state, delivered, 0.0, 0.0, 0, self.started_at, self.started_at)


async def open_mock_room(request: RoomRequest) -> DeviceSet:
    log = CallLog()
    clock = request.clock
    return DeviceSet(
        carm=MockCArm("carm", clock, log),
        table=MockTable("table", clock, log),
        injector=MockInjector("injector", clock, log),
        info={"patient_id": "MOCK", "patient_name": "Mock^Patient", "call_log": log},
    )
