"""The exam engine: a small runner, step handlers chosen by kind, and a typed event stream.

::

    runner.py     state machine, pause gate, the walk through the steps, abort, close
    handlers/     one module per step kind (capture, fluoro, tomo, inject, prompt)
    timing.py     time points and late films (pure functions)
    events.py     every kind of exam event, typed;  bus.py: stamping and delivery
    recovery.py   adopting what a crashed run left;  faults.py: fault reactions
    results.py    what the exam did;  progress.py: what a display shows (a subscriber)

Outputs subscribe to the bus (:attr:`ExamRunner.bus`): the journal (durable, first), the
progress display, a console, telemetry. Decision record: docs/decisions/0010.
"""

from .bus import EventBus, Recorded, Subscription
from .events import DURABLE_KINDS, AnyEvent, DeviceReport, Event, Kind, Source
from .handlers import HANDLERS, StepHandler
from .hooks import CRASH_ENV, WallClockWhilePaused, crash_after_line_from_env
from .identity import ANONYMOUS, exam_from_json, exam_json, make_exam_info
from .progress import ExamProgress
from .results import (
    FINAL_STATUSES,
    ExamAborted,
    ExamFaulted,
    ExamResult,
    StepResult,
)
from .room_info import Persistence, RoomInfo
from .runner import SIM_STATE_DIR, ExamRunner
from .store import DicomStore, ImageStore

__all__ = [
    "ANONYMOUS",
    "CRASH_ENV",
    "DURABLE_KINDS",
    "FINAL_STATUSES",
    "HANDLERS",
    "SIM_STATE_DIR",
    "AnyEvent",
    "DeviceReport",
    "DicomStore",
    "Event",
    "EventBus",
    "ExamAborted",
    "ExamFaulted",
    "ExamProgress",
    "ExamResult",
    "ExamRunner",
    "ImageStore",
    "Kind",
    "Persistence",
    "Recorded",
    "RoomInfo",
    "Source",
    "StepHandler",
    "StepResult",
    "Subscription",
    "WallClockWhilePaused",
    "crash_after_line_from_env",
    "exam_from_json",
    "exam_json",
    "make_exam_info",
]
