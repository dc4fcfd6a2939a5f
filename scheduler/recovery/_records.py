"""What a recovered exam is made of, and the journal scan's result."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exam_dir import LOCK_FILE
from ..journal import RESERVE_SUFFIX, ExamEvent

#: device events meaning radiation was produced (the acquisition happened)
BEAM_EVENTS = frozenset({"exposure", "fluoro_started", "tomo_started", "frames_dropped"})
JOURNAL = "events.jsonl"
TORN_SUFFIX = ".torn-"
#: the detail of a step settled from the images on disk
ADOPTED_DETAIL = "adopted from disk after a restart"
JOURNALED_DETAIL = "image(s) written before the restart"
#: what an exam folder holds besides images (sim-state: scheduler.exam.SIM_STATE_DIR)
_OWN_ENTRIES = frozenset(
    {
        JOURNAL,
        JOURNAL + RESERVE_SUFFIX,  # the journal's disk-full reserve, left by a crash
        "summary.json",
        "summary.json.tmp",
        "contact-sheet.png",
        "sim-state",
        LOCK_FILE,
    }
)
_FILE = re.compile(r"^(\d{3,})-(.+)\.dcm$")
_TEMP_IMAGE = re.compile(r"^\..+\.dcm\..+\.tmp$")
#: a journal line's wall time is wall_at_loop0 + t_s (ms precision); more apart = not ours
_CLOCK_TOLERANCE_S = 0.01
_UNCHANGED = "nothing was changed (a damaged journal is refused, never repaired)"
_FIRE_ONCE = ("expose", "fluoro", "tomo", "start_injection")


class RecoveryError(Exception):
    """The folder does not hold a resumable exam; the one-line message says why."""


@dataclass(frozen=True, slots=True)
class PriorCapture:
    """An image acquired before the restart, as the journal (or the disk) knows it."""

    step: str
    file: str
    frames: int
    reference_air_kerma_mgy: float
    after_injection_s: float | None
    kind: str
    recovered_from_disk: bool = False
    dap_gy_cm2: float = 0.0


@dataclass
class StepRecord:
    status: str = "pending"
    detail: str = ""
    planned_after_injection_s: float | None = None
    planned_s: float | None = None
    commanded_s: float | None = None
    device_s: float | None = None
    files: list[str] = field(default_factory=list)
    #: settled by this reconstruction from the images on disk (no ``step_done`` line yet)
    settled_on_resume: bool = False


@dataclass
class InFlight:
    """The step that was running when the process died."""

    step: str
    commanded: list[str] = field(default_factory=list)  # fire-once commands sent
    command_t_s: float | None = None  # last fire-once command's time
    kerma_before_mgy: float | None = None  # C-arm's cumulative air kerma before it
    beam_seen: bool = False  # a device reported radiation for it
    files: list[str] = field(default_factory=list)  # images already written for it


@dataclass(frozen=True, slots=True)
class IgnoredFile:
    """A file in the exam folder that is not part of the exam; left exactly as it was."""

    file: str
    reason: str


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes at the journal's end without a newline: a write cut short."""

    line: int  # the line number they would have had
    offset: int  # where the journal is cut
    size: int
    side_file: str | None = None  # where the bytes were kept, once cut


@dataclass
class RecoveredExam:
    context: dict[str, Any]
    steps: dict[str, StepRecord]
    in_flight: InFlight | None
    injection_start_s: float | None
    injection_commanded: bool
    position: str
    prior: list[PriorCapture]
    last_seq: int
    last_t_s: float
    started_s: float
    instance: int
    resumes: int
    faults: list[str]
    finished: str | None  # the final state if the exam had already ended
    finished_reason: str = ""
    #: files left alone (another study, unreadable, unknown), with the reason
    ignored: list[IgnoredFile] = field(default_factory=list)
    #: images adopted from disk (no capture line), by name
    adopted: list[str] = field(default_factory=list)
    #: a torn last line (cut, with its side file, when reconstructed with ``repair``)
    torn: TornTail | None = None


# -- the journal ------------------------------------------------------------------------------


@dataclass
class JournalScan:
    """A journal read and checked line by line; nothing written."""

    path: Path
    events: list[ExamEvent]
    size: int  # bytes read
    good: int  # bytes of complete records
    unterminated: bool  # the last record is complete but lacks its newline
    torn: TornTail | None
