"""What a progress display shows: a fold of the exam's events (a subscriber, never written
by the runner), plus the handle through which a signal or a key reaches the running exam."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..safety import DoseMonitor
from .bus import Recorded
from .events import (
    Answered,
    Captured,
    DeviceReport,
    DoseNoticed,
    ExamFinished,
    ExamStarted,
    InjectionConfirmed,
    ProgressRestored,
    Prompted,
    StateChanged,
    StepDone,
    StepStarted,
    UncommandedInjection,
    Waiting,
    WaitOver,
)


class Controllable(Protocol):
    def control(self, action: str, reason: str) -> str | None: ...


@dataclass
class ExamProgress:
    """Read by the display (a thread); updated by :meth:`on_event` on the event loop."""

    protocol: str
    state: str = "idle"  # a RunState value
    current_step: str = ""
    next_deadline_s: float | None = None
    next_step: str = ""
    images: int = 0
    steps_done: int = 0
    steps_total: int = 0
    contrast_ml: float = 0.0
    pressure_kpa: float = 0.0
    injection_start_s: float | None = None
    reference_air_kerma_mgy: float = 0.0
    dap_gy_cm2: float = 0.0
    #: the dose notices crossed (fluoroscopy timer, air-kerma levels, rate), in order
    dose_alerts: list[str] = field(default_factory=list)
    #: the exam's dose monitor (the runner attaches it): its live fluoroscopy time
    dose: DoseMonitor | None = field(default=None, repr=False, compare=False)
    message: str = ""
    #: each device's answer to the abort (role → "safe" or why not), once an abort ran
    abort_confirmations: dict[str, str] | None = None
    #: the exam being shown (the runner attaches itself): how a signal or a key reaches it
    runner: Controllable | None = field(default=None, repr=False, compare=False)
    _done: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def fluoro_time_s(self) -> float:
        """Cumulative fluoroscopy time (each run's duration, 21 CFR 1020.30(b))."""
        return 0.0 if self.dose is None else self.dose.fluoro_s

    def control(self, action: str, reason: str) -> str | None:
        """Pause or resume the attached exam; None when done, else why it was refused."""
        if self.runner is None:
            return "no exam is running yet"
        return self.runner.control(action, reason)

    def on_event(self, recorded: Recorded) -> None:
        """Fold one exam event into what is shown."""
        event = recorded.event
        match event:
            case StateChanged():
                self.state = event.to_state
                if event.to_state == "paused":
                    self.message = (
                        f"PAUSED ({event.reason}): new commands held; time points unchanged"
                    )
                elif event.from_state == "paused" and event.to_state == "running":
                    self.message = ""
            case ExamStarted():
                self.steps_total = len(event.steps)
            case ExamFinished():
                self.current_step = ""
            case StepStarted():
                self.current_step = event.title
            case Waiting():
                self.next_deadline_s, self.next_step = event.deadline_s, event.label
            case WaitOver():
                self.next_deadline_s, self.next_step = None, ""
            case StepDone():
                self._step_done(event.step)
            case Captured():
                self.images += 1
                self.reference_air_kerma_mgy += event.reference_air_kerma_mgy
                self.dap_gy_cm2 += event.dap_gy_cm2
            case InjectionConfirmed():
                self.injection_start_s = event.started_at_s
            case Prompted():
                self.message = event.message
            case Answered():
                self.message = ""
            case DoseNoticed():
                self.message = event.message
                self.dose_alerts.append(event.message)
            case UncommandedInjection():
                self.message = f"ALERT: injection not commanded by the scheduler: {event.evidence}"
            case ProgressRestored():
                self.steps_total = event.steps_total
                for step in event.steps_done:
                    self._step_done(step)
                self.images = event.images
                self.reference_air_kerma_mgy = event.reference_air_kerma_mgy
                self.injection_start_s = event.injection_start_s
            case DeviceReport(role="injector"):
                self._injector(event)

    def _step_done(self, step: str | None) -> None:
        if step is not None and step not in self._done:
            self._done.add(step)
            self.steps_done = len(self._done)

    def _injector(self, event: DeviceReport) -> None:
        delivered = event.payload.get("delivered_ml")
        if isinstance(delivered, int | float):
            self.contrast_ml = float(delivered)
        pressure = event.payload.get("pressure_kpa")
        if isinstance(pressure, int | float):
            self.pressure_kpa = float(pressure)
        if event.device_kind in ("completed", "stopped", "faulted"):
            self.pressure_kpa = 0.0  # no flow, no line pressure
