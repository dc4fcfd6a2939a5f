"""The exam as a whole, faults, and what only displays see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._kinds import Event, Kind, Source


# -- the exam as a whole ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ExamStarted(Event):
    KIND = Kind.EXAM_STARTED
    protocol: str
    room: str
    study_uid: str
    steps: tuple[str, ...]
    context: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExamResumed(Event):
    KIND = Kind.EXAM_RESUMED
    after_seq: int
    resumed_at_s: float
    injection_start_s: float | None
    wall_at_loop0: str
    prior_images: tuple[str, ...]
    adopted_from_disk: tuple[str, ...]
    ignored_files: tuple[dict[str, str], ...]
    journal_torn_tail: dict[str, Any] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(Event):
    KIND = Kind.STATE
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlRefused(Event):
    KIND = Kind.CONTROL_REFUSED
    action: str
    state: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PausedDuringInjection(Event):
    KIND = Kind.PAUSED_DURING_INJECTION
    delivered_ml: float
    note: str = "the injection runs on its program (physiological time); not held"


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectorReset(Event):
    KIND = Kind.INJECTOR_RESET
    found_state: str
    found_delivered_ml: float
    state: str
    reason: str = "the injector held an earlier exam's injection; cleared before this exam"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDone(Event):
    KIND = Kind.STEP_DONE
    status: str
    detail: str
    planned_after_injection_s: float | None
    planned_s: float | None
    commanded_s: float | None
    device_s: float | None
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortInterruptIgnored(Event):
    KIND = Kind.ABORT_INTERRUPT_IGNORED
    note: str = "the abort runs to its end: every device is still made safe"


@dataclass(frozen=True, slots=True, kw_only=True)
class Aborted(Event):
    KIND = Kind.ABORT
    reason: str
    confirmed: dict[str, str]
    duration_s: float
    wall_duration_s: float
    since_detection_s: float | None
    contrast_delivered_ml: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ExamFinished(Event):
    KIND = Kind.EXAM_FINISHED
    state: str
    reason: str
    images: int
    duration_s: float
    contrast_delivered_ml: float


# -- faults ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultNoted(Event):
    KIND = Kind.FAULT
    device: str
    fault: str
    reaction: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UncommandedInjection(Event):
    """The injector delivered contrast the scheduler did not command (a start at the
    injector itself, a second injection, more than the program): a patient-safety event.

    ``device_ml``/``device_starts`` are what the injector reports for this exam (since its
    baseline at the exam's start); ``commanded_ml``/``commanded_starts`` what the scheduler
    sent. ``decision`` is the fault policy's (``faults.injector.uncommanded_injection``).
    """

    KIND = Kind.UNCOMMANDED_INJECTION
    SOURCE = Source.SAFETY
    evidence: str
    device_ml: float | None
    device_starts: int | None
    commanded_ml: float
    commanded_starts: int
    decision: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceLostEvent(Event):
    """A device stopped answering mid-step: its safe state, then the policy's decision."""

    KIND = Kind.DEVICE_LOST
    device: str
    error: str
    safe_state: str
    decision: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectorLinkLost(Event):
    """The injector's link failed while its report was read: it runs its program on."""

    KIND = Kind.DEVICE_LOST
    device: str = "injector"
    error: str
    decision: str = "continue"
    safe_state: str = "the injector runs its program on its own"


# -- for displays only (never journaled) -------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(Event):
    KIND = Kind.STEP_STARTED
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting(Event):
    """The runner waits for a step's time point."""

    KIND = Kind.WAITING
    label: str
    deadline_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitOver(Event):
    KIND = Kind.WAIT_OVER


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressRestored(Event):
    """A resumed exam's starting point: what was done before the restart."""

    KIND = Kind.PROGRESS_RESTORED
    steps_total: int
    steps_done: tuple[str, ...]
    images: int
    reference_air_kerma_mgy: float
    injection_start_s: float | None
