"""Power contrast injector contract.

Pressures are kPa at the boundary (1 psi = 6.895 kPa); ``pressure_psi`` helpers exist for
display. ``start`` is fire-once: a driver never re-sends it, and after a timeout the caller
must query :meth:`Injector.status` to learn whether the injection began.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ._bounded import Bounded
from ._validate import check_range
from .events import EventSource

KPA_PER_PSI = 6.894757


@dataclass(frozen=True, slots=True)
class InjectionPhase:
    flow_ml_s: float
    volume_ml: float
    #: pause before this phase starts (e.g. a delayed saline chaser)
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        check_range("flow_ml_s", self.flow_ml_s, 0.1, 30.0)
        check_range("volume_ml", self.volume_ml, 0.5, 500.0)
        check_range("delay_s", self.delay_s, 0.0, 600.0)

    @property
    def duration_s(self) -> float:
        return self.volume_ml / self.flow_ml_s


@dataclass(frozen=True, slots=True)
class InjectionProgram:
    phases: tuple[InjectionPhase, ...]
    pressure_limit_kpa: float
    rise_time_s: float = 0.5
    #: iodine concentration of the loaded contrast, for dose bookkeeping
    concentration_mg_ml: float = 300.0

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("an injection program needs at least one phase")
        check_range("pressure_limit_kpa", self.pressure_limit_kpa, 100.0, 8300.0)
        check_range("rise_time_s", self.rise_time_s, 0.0, 10.0)
        check_range("concentration_mg_ml", self.concentration_mg_ml, 0.0, 400.0)

    @property
    def volume_ml(self) -> float:
        return sum(p.volume_ml for p in self.phases)

    @property
    def max_flow_ml_s(self) -> float:
        return max(p.flow_ml_s for p in self.phases)

    @property
    def nominal_duration_s(self) -> float:
        return sum(p.delay_s + p.duration_s for p in self.phases) + self.rise_time_s


class InjectorState(enum.StrEnum):
    IDLE = "idle"
    ARMED = "armed"
    INJECTING = "injecting"
    HOLDING = "holding"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAULTED = "faulted"


class InjectorFault(enum.StrEnum):
    OVER_PRESSURE = "over_pressure"
    AIR_DETECTED = "air_detected"
    OCCLUSION = "occlusion"
    MOTOR_STALL = "motor_stall"
    VOLUME_LIMIT = "volume_limit"


@dataclass(frozen=True, slots=True)
class InjectorStatus:
    """What the injector reports. ``delivered_ml`` is the current arm's (since it was armed:
    the program now loaded); the two counters, when the injector keeps them, run since the
    device was reset (powered on) over every arm, so the host can tell an injection it did
    not command (a local start, a second arm) from its own."""

    state: InjectorState
    delivered_ml: float
    flow_ml_s: float
    pressure_kpa: float
    phase_index: int | None
    #: device-reported moment contrast began to flow, on the host monotonic clock
    started_at_s: float | None
    ended_at_s: float | None = None
    faults: tuple[InjectorFault, ...] = ()
    #: contrast delivered since the device was reset, over every arm (None: not reported)
    delivered_total_ml: float | None = None
    #: injections started since the device was reset, host-commanded or not (None: not reported)
    injections_started: int | None = None

    @property
    def pressure_psi(self) -> float:
        return self.pressure_kpa / KPA_PER_PSI


class Injector(Bounded, EventSource, ABC):
    """Public methods bound every await; drivers implement the ``_`` hooks."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    async def arm(self, program: InjectionProgram, *, timeout_s: float = 2.0) -> None:
        await self._bounded("arm", timeout_s, self._arm(program))

    async def disarm(self, *, timeout_s: float = 2.0) -> None:
        await self._bounded("disarm", timeout_s, self._disarm())

    async def start(self, *, timeout_s: float = 2.0) -> InjectorStatus:
        """Fire-once: command the armed program to start; returns the acknowledged status.

        The status returned carries ``started_at_s`` once flow is confirmed; use
        :meth:`wait_started` to wait for that confirmation.
        """
        return await self._bounded("start", timeout_s, self._start())

    async def wait_started(self, *, timeout_s: float = 5.0) -> InjectorStatus:
        return await self._bounded("wait_started", timeout_s, self._wait_started())

    async def wait_finished(self, *, timeout_s: float) -> InjectorStatus:
        """Wait until the injection completed, stopped or faulted."""
        return await self._bounded("wait_finished", timeout_s, self._wait_finished())

    async def hold(self, *, timeout_s: float = 0.5) -> None:
        await self._bounded("hold", timeout_s, self._hold())

    async def resume(self, *, timeout_s: float = 1.0) -> None:
        await self._bounded("resume", timeout_s, self._resume())

    async def stop(self, *, timeout_s: float = 0.1) -> None:
        """Safe state: stop flow and disarm. Idempotent."""
        await self._bounded("stop", timeout_s, self._stop())

    async def status(self, *, timeout_s: float = 1.0) -> InjectorStatus:
        return await self._bounded("status", timeout_s, self._status())

    async def safe_state(self, *, timeout_s: float = 0.1) -> None:
        await self.stop(timeout_s=timeout_s)

    @abstractmethod
    async def _arm(self, program: InjectionProgram) -> None: ...

    @abstractmethod
    async def _disarm(self) -> None: ...

    @abstractmethod
    async def _start(self) -> InjectorStatus: ...

    @abstractmethod
    async def _wait_started(self) -> InjectorStatus: ...

    @abstractmethod
    async def _wait_finished(self) -> InjectorStatus: ...

    @abstractmethod
    async def _hold(self) -> None: ...

    @abstractmethod
    async def _resume(self) -> None: ...

    @abstractmethod
    async def _stop(self) -> None: ...

    @abstractmethod
    async def _status(self) -> InjectorStatus: ...
