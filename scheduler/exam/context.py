"""One exam's working state, shared by the runner and the step handlers.

The runner owns it; handlers read the room through it and record what they do in it (the
step results, the images, the injection anchor) and on its event bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers import Clock, InjectorStatus
from drivers.backends import DeviceSet

from ..journal import Journal
from ..operator import Operator, OperatorRequests
from ..policy import FaultPolicy
from ..protocol import Protocol
from ..records import CaptureRecord, ExamInfo
from ..recovery import PriorCapture, RecoveredExam
from ..room import Room
from ..safety import DoseMonitor
from ..state import RunState
from ..storage import DEFAULT_FRAME_BYTES
from .bus import EventBus
from .contrast import ContrastLedger
from .events import AnyEvent
from .results import StepResult
from .room_info import RoomInfo
from .store import ImageStore

ROLES = ("injector", "carm", "table")


class PauseGate:
    """Open while the exam runs; closed while it is paused. Commands wait at it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._open = asyncio.Event()
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def wait(self) -> float:
        """Wait while paused; returns how long this call waited (0 when running)."""
        if self._open.is_set():
            return 0.0
        t0 = self._clock.now()
        await self._open.wait()
        return self._clock.now() - t0


@dataclass
class ExamContext:
    protocol: Protocol
    room: Room
    devices: DeviceSet
    clock: Clock
    operator: Operator
    out_dir: Path
    exam: ExamInfo
    bus: EventBus
    journal: Journal
    store: ImageStore
    info: RoomInfo
    policy: FaultPolicy
    gate: PauseGate
    dose: DoseMonitor
    recovered: RecoveredExam | None = None
    results: list[StepResult] = field(default_factory=list)
    records: list[CaptureRecord] = field(default_factory=list)
    #: images acquired before a restart (resumed exams)
    prior: list[PriorCapture] = field(default_factory=list)
    #: the injector-confirmed injection start: every time point is relative to it
    anchor: float | None = None
    position: str = "supine"
    repositioning: bool = False
    instance: int = 0
    current_step: str | None = None
    next_step: str = ""
    next_deadline_s: float | None = None
    #: role → ok | faulted: … | lost: …
    health: dict[str, str] = field(default_factory=lambda: dict.fromkeys(ROLES, "ok"))
    faults: list[str] = field(default_factory=list)
    dap_gy_cm2: float = 0.0
    frame_bytes: int = DEFAULT_FRAME_BYTES
    #: contrast delivered, as the injector last reported it
    contrast_ml: float = 0.0
    #: the injector's own final (or stop) report, once it gave one
    injector_status: InjectorStatus | None = None
    #: what the scheduler commanded against what the injector's counters report
    contrast: ContrastLedger = field(default_factory=ContrastLedger)
    #: steps taken late inside their late window (their status stays "done")
    taken_late: set[str] = field(default_factory=set)
    #: loop time this process took over the exam (resumed exams)
    resumed_at_s: float | None = None
    #: when the fault that ends the exam was detected (for the abort's timing)
    detected_s: float | None = None
    #: decided by a fault reaction: how the exam ends once its steps are stopped
    end: tuple[RunState, str] | None = None
    monitor: asyncio.Task[None] | None = None
    steps_task: asyncio.Task[None] | None = None
    side_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    #: operator actions accepted and not yet carried out (skip, repeat, extra film)
    requests: OperatorRequests = field(default_factory=OperatorRequests)
    #: the acquisition step whose view the room was last set to (an extra film's view)
    view_step: Any = None
    #: (step, technique) of an acquisition at its view, waiting for its time point: an
    #: operator film taken meanwhile sets that view again afterwards
    prepared: tuple[Any, Any] | None = None

    def emit(self, event: AnyEvent) -> None:
        self.bus.emit(event)

    def role_of(self, device: str) -> str:
        roles = {
            self.devices.injector.name: "injector",
            self.devices.carm.name: "carm",
            self.devices.table.name: "table",
        }
        return roles.get(device, device)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` beside the steps; cancelled by an abort, awaited at the end."""
        task = asyncio.create_task(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def delivered_ml(self) -> float:
        """Contrast given: the injector's final report, else its last; when the injector
        counts what it delivered over every arm, that count for this exam wins (it includes
        an injection the scheduler did not command)."""
        if self.injector_status is not None:
            arm = max(self.injector_status.delivered_ml, 0.0)
        else:
            arm = self.contrast_ml
        device = self.contrast.device_ml
        return arm if device is None else max(arm, device)

    @property
    def images(self) -> int:
        return len(self.records) + len(self.prior)


def effective_policy(room: Room, protocol: Protocol) -> FaultPolicy:
    """The room's fault policy with the protocol's ``faults:`` laid over it, field by field."""
    if protocol.faults is None:
        return room.faults
    return room.faults.model_copy(update=protocol.faults.model_dump(exclude_unset=True))
