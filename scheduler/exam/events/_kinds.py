"""Kinds of exam events, where each goes (journal or not, fsynced or not), and the base class."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Source(enum.StrEnum):
    """Who a journal line is from (devices are named by their own name instead)."""

    SCHEDULER = "scheduler"
    OPERATOR = "operator"
    SAFETY = "safety"


class Kind(enum.StrEnum):
    """What happened. Device events keep the device's own kinds (drivers' vocabulary)."""

    EXAM_STARTED = "exam_started"
    EXAM_RESUMED = "exam_resumed"
    STATE = "state"
    CONTROL_REFUSED = "control_refused"
    PAUSED_DURING_INJECTION = "paused_during_injection"
    INJECTOR_RESET = "injector_reset"
    STEP_DONE = "step_done"
    COMMAND = "command"
    COMMAND_NOT_EXECUTED = "command_not_executed"
    CAPTURE = "capture"
    CAPTURE_MISSED = "capture_missed"
    CAPTURE_FAILED = "capture_failed"
    CAPTURE_RETRY = "capture_retry"
    CAPTURE_RECOVERED = "capture_recovered"
    FLUORO_DONE = "fluoro_done"
    MOVE_RETRY = "move_retry"
    INTERLOCK_REFUSED = "interlock_refused"
    FLUORO_TIMER_ALERT = "fluoro_timer_alert"
    AIR_KERMA_NOTIFICATION = "air_kerma_notification"
    DOSE_RATE_EXCEEDED = "dose_rate_exceeded"
    INJECTION_CONFIRMED = "injection_confirmed"
    INJECTION_ADOPTED = "injection_adopted"
    INJECTION_OVERRUN = "injection_overrun"
    INJECTION_UNCONFIRMED = "injection_unconfirmed"
    INJECTION_FINISHED = "injection_finished"
    INJECTION_STOP_CONFIRMED = "injection_stop_confirmed"
    PROMPT = "prompt"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    FAULT = "fault"
    UNCOMMANDED_INJECTION = "uncommanded_injection"
    DEVICE_LOST = "device_lost"
    ABORT_INTERRUPT_IGNORED = "abort_interrupt_ignored"
    OPERATOR_REQUEST = "operator_request"
    OPERATOR_REQUEST_REFUSED = "operator_request_refused"
    STEP_SKIPPED = "step_skipped"
    OPERATOR_FILM = "operator_film"
    ABORT = "abort"
    EXAM_FINISHED = "exam_finished"
    # not journaled: what a display shows between journal lines
    STEP_STARTED = "step_started"
    WAITING = "waiting"
    WAIT_OVER = "wait_over"
    PROGRESS_RESTORED = "progress_restored"


TRANSIENT = frozenset({Kind.STEP_STARTED, Kind.WAITING, Kind.WAIT_OVER, Kind.PROGRESS_RESTORED})

#: lines whose loss in a machine crash would hide something done to the patient: fsynced.
#: The second group are device facts (the drivers' kinds) the journal records as they come.
DURABLE_KINDS: frozenset[str] = frozenset(
    {
        Kind.EXAM_STARTED,
        Kind.EXAM_RESUMED,
        Kind.STATE,
        Kind.STEP_DONE,
        Kind.COMMAND,
        Kind.CAPTURE,
        Kind.CAPTURE_MISSED,
        Kind.CAPTURE_FAILED,
        Kind.CAPTURE_RETRY,
        Kind.CAPTURE_RECOVERED,
        Kind.INTERLOCK_REFUSED,
        Kind.INJECTION_CONFIRMED,
        Kind.CONFIRMED,
        Kind.DECLINED,
        Kind.STEP_SKIPPED,
        Kind.OPERATOR_FILM,
        Kind.FAULT,
        Kind.UNCOMMANDED_INJECTION,
        Kind.DEVICE_LOST,
        Kind.ABORT,
        Kind.EXAM_FINISHED,
    }
    | {
        "injection_started",
        "start_acknowledged",
        "completed",
        "stopped",
        "faulted",
        "exposure",
        "fluoro_started",
        "fluoro_ended",
        "tomo_started",
        "tomo_ended",
        "frames_dropped",
        "security",  # frames the wire session layer dropped (forged, replayed, unauthenticated)
    }
)


#: metadata of a field subscribers get but the journal line leaves out
NOT_JOURNALED = {"journal": False}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every scheduler-side event; ``step`` is the protocol step it belongs to."""

    KIND: ClassVar[Kind]
    SOURCE: ClassVar[Source] = Source.SCHEDULER
    step: str | None = None

    @property
    def kind(self) -> str:
        return self.KIND.value

    @property
    def source(self) -> str:
        return self.SOURCE.value

    def data(self) -> dict[str, Any]:
        """The journal line's ``data``: every journaled field but ``step``, in order."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "step" and f.metadata.get("journal", True)
        }


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceReport:
    """Something a device reported on its own (journaled under the device's name)."""

    role: str  # injector | carm | table (or the device's name when unknown)
    device: str
    device_kind: str
    step: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.device_kind

    @property
    def source(self) -> str:
        return self.device

    def data(self) -> dict[str, Any]:
        return dict(self.payload)


AnyEvent = Event | DeviceReport
