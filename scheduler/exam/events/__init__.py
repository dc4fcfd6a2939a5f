"""Every kind of exam event, typed, importable from here.

The runner and the step handlers *emit* these; subscribers (journal, progress display,
summary, later a web console, MPPS, telemetry) *consume* them through the
:class:`~scheduler.exam.bus.EventBus`. :class:`Kind` names every kind the scheduler emits
(device events keep the drivers' own kinds, :class:`DeviceReport`); each event class has one
kind, and its fields are the journal line's ``data`` in declaration order (``step`` is the
line's own field), so ``events.jsonl`` keeps exactly the lines `fluoroctl resume` reads.

Fields with :data:`NOT_JOURNALED` metadata travel to subscribers but never into the journal
(the image itself beside its ``capture`` line). Events whose kind is in :data:`TRANSIENT`
are not journaled at all: they exist for displays (which step runs, the next deadline).
:data:`DURABLE_KINDS` are the lines fsynced before the emitter goes on.

The classes live in private modules (``_kinds``: kinds and the base; ``_exam``: the exam as
a whole and faults; ``_steps``: what steps do) and are re-exported here.
"""

from ._exam import (
    Aborted,
    AbortInterruptIgnored,
    ControlRefused,
    DeviceLostEvent,
    ExamFinished,
    ExamResumed,
    ExamStarted,
    FaultNoted,
    InjectorLinkLost,
    InjectorReset,
    PausedDuringInjection,
    ProgressRestored,
    StateChanged,
    StepDone,
    StepStarted,
    UncommandedInjection,
    Waiting,
    WaitOver,
)
from ._kinds import (
    DURABLE_KINDS,
    NOT_JOURNALED,
    TRANSIENT,
    AnyEvent,
    DeviceReport,
    Event,
    Kind,
    Source,
)
from ._steps import (
    AcquisitionCommanded,
    Answered,
    ArmCommanded,
    Captured,
    CaptureFailed,
    CaptureMissed,
    CaptureRecovered,
    CaptureRetake,
    CaptureRetry,
    CommandNotExecuted,
    DoseNoticed,
    FluoroDone,
    InjectionAdopted,
    InjectionCommanded,
    InjectionConfirmed,
    InjectionFinished,
    InjectionOverrun,
    InjectionStopConfirmed,
    InjectionUnconfirmed,
    InterlockRefusal,
    MoveRetry,
    OperatorFilm,
    OperatorRequested,
    OperatorRequestRefused,
    Prompted,
    StepSkipped,
    ViewCommanded,
)

__all__ = [
    "DURABLE_KINDS",
    "NOT_JOURNALED",
    "TRANSIENT",
    "AbortInterruptIgnored",
    "Aborted",
    "AcquisitionCommanded",
    "Answered",
    "AnyEvent",
    "ArmCommanded",
    "CaptureFailed",
    "CaptureMissed",
    "CaptureRecovered",
    "CaptureRetake",
    "CaptureRetry",
    "Captured",
    "CommandNotExecuted",
    "ControlRefused",
    "DeviceLostEvent",
    "DeviceReport",
    "DoseNoticed",
    "Event",
    "ExamFinished",
    "ExamResumed",
    "ExamStarted",
    "FaultNoted",
    "FluoroDone",
    "InjectionAdopted",
    "InjectionCommanded",
    "InjectionConfirmed",
    "InjectionFinished",
    "InjectionOverrun",
    "InjectionStopConfirmed",
    "InjectionUnconfirmed",
    "InjectorLinkLost",
    "InjectorReset",
    "InterlockRefusal",
    "Kind",
    "MoveRetry",
    "OperatorFilm",
    "OperatorRequestRefused",
    "OperatorRequested",
    "PausedDuringInjection",
    "ProgressRestored",
    "Prompted",
    "Source",
    "StateChanged",
    "StepDone",
    "StepSkipped",
    "StepStarted",
    "UncommandedInjection",
    "ViewCommanded",
    "WaitOver",
    "Waiting",
]
