"""What steps do: commands, acquisitions, safety refusals, the injection, the operator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...records import CaptureRecord
from ._kinds import NOT_JOURNALED, Event, Kind, Source


# -- commands (fire-once ones are fsynced before they are sent) ---------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class AcquisitionCommanded(Event):
    KIND = Kind.COMMAND
    command: str  # expose | fluoro | tomo
    planned_s: float | None
    kerma_before_mgy: float
    #: timed (armed for the beam to come on at beam_at_s) | early | immediate (sent at
    #: command_due_s); journaled, fsynced, before the command leaves (decision 0007)
    trigger: str = "immediate"
    command_due_s: float | None = None
    beam_at_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewCommanded(Event):
    KIND = Kind.COMMAND
    command: str = "prepare_view"
    field: str
    longitudinal_mm: float
    secondary_angle_deg: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmCommanded(Event):
    KIND = Kind.COMMAND
    command: str = "arm"
    volume_ml: float
    max_flow_ml_s: float
    pressure_limit_kpa: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionCommanded(Event):
    KIND = Kind.COMMAND
    command: str = "start_injection"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandNotExecuted(Event):
    KIND = Kind.COMMAND_NOT_EXECUTED
    reason: str


# -- acquisitions ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Captured(Event):
    """An image is durable on disk (the line follows the file: decision 0007)."""

    KIND = Kind.CAPTURE
    file: str
    image_kind: str
    frames: int
    planned_s: float | None
    commanded_s: float | None
    device_s: float | None
    after_injection_s: float | None
    position: str
    kv: float
    mas: float
    layer_height_mm: float | None
    reference_air_kerma_mgy: float
    dap_gy_cm2: float
    #: the acquisition's trigger, the scheduler's lateness (results.py) and the device's
    #: beam-on time - planned
    trigger: str | None = None
    lateness_s: float | None = None
    device_lateness_s: float | None = None
    record: CaptureRecord | None = field(
        default=None, repr=False, compare=False, metadata=NOT_JOURNALED
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureMissed(Event):
    KIND = Kind.CAPTURE_MISSED
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureFailed(Event):
    KIND = Kind.CAPTURE_FAILED
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureRetry(Event):
    """No exposure was made (the device says so): taken again inside the window."""

    KIND = Kind.CAPTURE_RETRY
    fault: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureRetake(Event):
    """A radiograph whose frame the detector lost, exposed again (``dropped_radiograph``)."""

    KIND = Kind.CAPTURE_RETRY
    fault: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureRecovered(Event):
    KIND = Kind.CAPTURE_RECOVERED
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FluoroDone(Event):
    KIND = Kind.FLUORO_DONE
    frames: int
    expected: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveRetry(Event):
    KIND = Kind.MOVE_RETRY
    fault: str
    attempt: int


# -- safety ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class InterlockRefusal(Event):
    KIND = Kind.INTERLOCK_REFUSED
    SOURCE = Source.SAFETY
    command: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DoseNoticed(Event):
    """A dose notice crossed (its kind is the notice's: 5-min alert, air-kerma level, rate)."""

    KIND = Kind.AIR_KERMA_NOTIFICATION
    SOURCE = Source.SAFETY
    notice: Kind = field(metadata=NOT_JOURNALED)
    message: str
    value: float

    @property
    def kind(self) -> str:
        return self.notice.value


# -- the injection -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionConfirmed(Event):
    KIND = Kind.INJECTION_CONFIRMED
    started_at_s: float
    started_wall: str
    commanded_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionAdopted(Event):
    KIND = Kind.INJECTION_ADOPTED
    reason: str = "the start was sent before the restart; the injector reports it began"
    started_at_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionOverrun(Event):
    KIND = Kind.INJECTION_OVERRUN
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionUnconfirmed(Event):
    KIND = Kind.INJECTION_UNCONFIRMED
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionFinished(Event):
    KIND = Kind.INJECTION_FINISHED
    state: str
    delivered_ml: float
    faults: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionStopConfirmed(Event):
    KIND = Kind.INJECTION_STOP_CONFIRMED
    result: str


# -- the operator ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Prompted(Event):
    KIND = Kind.PROMPT
    SOURCE = Source.OPERATOR
    action: str
    message: str
    position: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FromOperator(Event):
    """An operator's answer or action: its line's ``data`` ends with ``source`` (terminal,
    console or script) and ``who`` (a console session and address, when known)."""

    SOURCE = Source.OPERATOR
    origin: str = field(default="script", metadata=NOT_JOURNALED)
    who: str = field(default="", metadata=NOT_JOURNALED)

    def data(self) -> dict[str, Any]:
        return {**Event.data(self), "source": self.origin, "who": self.who}


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered(FromOperator):
    KIND = Kind.CONFIRMED
    confirmed: bool = field(metadata=NOT_JOURNALED)
    action: str
    position: str | None

    @property
    def kind(self) -> str:
        return (Kind.CONFIRMED if self.confirmed else Kind.DECLINED).value


# -- operator actions (skip a step, repeat a film, an extra film) ------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorRequested(FromOperator):
    """The operator asked for an action and it was accepted (it is carried out later)."""

    KIND = Kind.OPERATOR_REQUEST
    action: str  # skip | repeat | extra
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorRequestRefused(FromOperator):
    """An operator action that was not (or could no longer be) carried out, and why."""

    KIND = Kind.OPERATOR_REQUEST_REFUSED
    action: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSkipped(FromOperator):
    """A step is skipped (nothing of it was done): by a skip request or a declined prompt."""

    KIND = Kind.STEP_SKIPPED
    reason: str
    #: skip (the operator asked) | decline (the step's prompt was declined, ``on_decline``)
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorFilm(FromOperator):
    """A film the operator asked for (a repeat of ``step``'s film or an extra film at its
    view) is done: a new exposure, its images kept beside the step's own."""

    KIND = Kind.OPERATOR_FILM
    action: str  # repeat | extra
    status: str  # done | missed | failed
    detail: str
    files: tuple[str, ...]
    reason: str
