"""Reconstructs an interrupted exam from its folder: the journal plus the images on disk.

The journal (events.jsonl) is the record; every step that ended wrote a ``step_done`` line,
every image a ``capture`` line *after* its DICOM file was linked into place. So after a
crash:

* a step with ``step_done`` is finished, with the status and files recorded there;
* every DICOM file with no ``capture`` line is matched to its step by its *own* attributes —
  its Study Instance UID must be this exam's, its SOP Instance UID the one this exam gives
  its Instance Number, and its Acquisition UID names the protocol step (see
  :func:`scheduler.outputs.dicom.acquisition_uid_for`) — and adopted, for every step: a
  film that exists is never taken again. A step whose images all exist is settled
  ("done"); a tomosynthesis series only partly on disk is handed to the runner as in
  flight. Files of another study, unreadable or unknown files are left alone and listed in
  :attr:`RecoveredExam.ignored` with the reason;
* the first step without ``step_done`` was in flight: :class:`RecoveredExam` says whether its
  fire-once command was sent (``command`` line) and whether a device reported the beam on or
  the injection started, so the runner can decide without ever replaying a fire-once action.

A damaged journal is refused, never "repaired" by deleting records: every line must be a
complete exam event of *this* exam (``seq`` running 1..N, one ``exam_started``, steps of this
protocol, time stamps on this exam's clock), else :class:`RecoveryError` names the line and
the reason and nothing is changed. The one exception is a torn last line — bytes without a
newline at the end, what a write cut short leaves: :func:`reconstruct` with ``repair`` keeps
those bytes in a side file (``events.jsonl.torn-<line>``, fsynced) and only then cuts them
off the journal. A last record complete but for its newline is kept and terminated.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydantic import ValidationError

from .exam_dir import LOCK_FILE
from .journal import RESERVE_SUFFIX, ExamEvent
from .outputs.dicom import XRF_IMAGE_STORAGE, acquisition_uid_for, instance_uid_for
from .protocol import CaptureStep, FluoroStep, Protocol, TomoStep

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


def read_journal(path: Path) -> list[ExamEvent]:
    """Every record of the journal at ``path``, checked (see :func:`scan_journal`)."""
    return scan_journal(path).events


def scan_journal(path: Path) -> JournalScan:
    """Read and check every line of the journal; :class:`RecoveryError` on any damage.

    Changes nothing. Only bytes after the last newline may be incomplete (a torn write):
    reported in :attr:`JournalScan.torn`, or, if they are a complete record lacking only
    its newline, kept as a record (:attr:`JournalScan.unterminated`).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecoveryError(f"{path}: no journal (is this an exam folder?)") from None
    except OSError as exc:
        raise RecoveryError(f"{path}: cannot read the journal: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    last = lines.pop()  # after the final newline: b"" when the journal ends cleanly
    checker = _LineChecker(path)
    events = [checker.check(i, raw) for i, raw in enumerate(lines, 1)]
    good = len(data) - len(last)
    unterminated = False
    torn: TornTail | None = None
    if last:
        line_no = len(lines) + 1
        record = _parse(last)
        if record is not None:
            events.append(checker.check(line_no, last))
            good, unterminated = len(data), True
        else:
            torn = TornTail(line_no, good, len(last))
    if not events:
        raise RecoveryError(f"{path}: the journal holds no complete record; {_UNCHANGED}")
    return JournalScan(path, events, len(data), good, unterminated, torn)


def _parse(raw: bytes) -> ExamEvent | None:
    try:
        return ExamEvent.model_validate_json(raw)
    except ValueError:
        return None


class _LineChecker:
    """Checks that each line is the next record of this one exam."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: frozenset[str] = frozenset()
        self.wall0: dt.datetime | None = None

    def fail(self, line: int, reason: str) -> RecoveryError:
        return RecoveryError(f"{self.path}:{line}: {reason}; {_UNCHANGED}")

    def check(self, line: int, raw: bytes) -> ExamEvent:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            why = f"not JSON: {exc.msg} at column {exc.colno}"
            raise self.fail(line, f"unreadable line ({why})") from None
        except ValueError:
            raise self.fail(line, "unreadable line (not UTF-8 text)") from None
        if not isinstance(obj, dict):
            raise self.fail(line, "valid JSON but not an exam event (not an object)")
        unknown = sorted(set(obj) - set(ExamEvent.model_fields))
        if unknown:
            raise self.fail(line, f"valid JSON but not an exam event (unknown key {unknown[0]!r})")
        try:
            event = ExamEvent.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "line"
            raise self.fail(
                line, f"valid JSON but not an exam event ({where}: {err['msg']})"
            ) from None
        if event.seq != line:
            if event.seq > line:
                why = f"sequence gap: seq {event.seq} where {line} was expected (lines missing)"
            else:
                why = f"seq {event.seq} repeats or goes back (expected {line})"
            raise self.fail(line, why)
        if event.kind == "exam_started":
            if line != 1:
                raise self.fail(line, "a second exam_started (a line of another exam?)")
            self._start(event)
        elif line == 1:
            raise self.fail(line, f"the journal begins with {event.kind!r}, not exam_started")
        if event.step is not None and event.step not in self.steps:
            raise self.fail(
                line, f"step {event.step!r} is not a step of this exam (a line of another exam?)"
            )
        self._check_clock(line, event)
        self._check_fields(line, event)
        return event

    def _start(self, event: ExamEvent) -> None:
        d = event.data
        steps = d.get("steps")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise self.fail(1, "exam_started lists no steps")
        self.steps = frozenset(steps)
        context = d.get("context")
        if not isinstance(context, dict) or not context:
            raise self.fail(1, "the journal has no resume context (older version?)")
        for key in ("protocol", "room", "exam"):
            if not isinstance(context.get(key), dict):
                raise self.fail(1, f"the resume context lacks {key!r}")
        study = context["exam"].get("study_instance_uid")
        if not isinstance(study, str) or (d.get("study_uid") not in (None, study)):
            raise self.fail(1, "exam_started's study UID does not match its resume context")
        w0 = context.get("wall_at_loop0")
        if not isinstance(w0, str):
            raise self.fail(1, "the resume context lacks 'wall_at_loop0'")
        try:
            self.wall0 = dt.datetime.fromisoformat(w0)
            if self.wall0.tzinfo is None:
                raise ValueError(w0)
        except ValueError:
            raise self.fail(1, f"the resume context's wall_at_loop0 {w0!r} is no time") from None

    def _check_clock(self, line: int, event: ExamEvent) -> None:
        if not math.isfinite(event.t_s):
            raise self.fail(line, f"t_s {event.t_s} is not a time")
        if self.wall0 is None:
            return
        try:
            wall = dt.datetime.fromisoformat(event.wall)
            off = (wall - self.wall0).total_seconds() - event.t_s
        except (ValueError, TypeError, OverflowError):
            raise self.fail(line, f"wall time {event.wall!r} is not a time") from None
        if abs(off) > _CLOCK_TOLERANCE_S:
            raise self.fail(
                line,
                f"its time stamps do not fit this exam's clock (wall {event.wall} at "
                f"t={event.t_s:g} s is {off:+.3f} s off; a line of another exam?)",
            )

    def _check_fields(self, line: int, event: ExamEvent) -> None:
        """The fields recovery reads: a record lacking them cannot be interpreted."""
        d = event.data
        if event.kind == "capture":
            name = d.get("file")
            if not isinstance(name, str) or not _plain_image_name(name):
                raise self.fail(line, f"capture names no image file of this folder ({name!r})")
        elif event.kind == "step_done":
            files = d.get("files", [])
            if not isinstance(d.get("status", ""), str) or not isinstance(files, list):
                raise self.fail(line, "step_done without a valid status and file list")
            if not all(isinstance(f, str) and _plain_image_name(f) for f in files):
                raise self.fail(line, "step_done lists a file outside this folder")
        elif event.kind == "injection_confirmed":
            if not _is_number(d.get("started_at_s")):
                raise self.fail(line, "injection_confirmed without a numeric started_at_s")
        elif event.kind == "command" and d.get("command") in _FIRE_ONCE:
            for key in ("kerma_before_mgy", "planned_s"):
                if d.get(key) is not None and not _is_number(d.get(key)):
                    raise self.fail(line, f"command {d['command']} with a non-numeric {key}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plain_image_name(name: str) -> bool:
    """A file name inside the exam folder (no path, not hidden) ending in .dcm."""
    return (
        name.endswith(".dcm")
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and "\0" not in name
    )


# -- reconstruction ---------------------------------------------------------------------------


def reconstruct(out_dir: Path, *, repair: bool = False) -> RecoveredExam:
    """The exam as the journal and the disk record it; :class:`RecoveryError` if unusable.

    Without ``repair`` nothing is written. With ``repair`` (the process that resumes, holding
    the folder's lock) an exam that has not ended gets its torn last line kept in a side
    file and cut off the journal, or its unterminated last record terminated — only after
    everything else was checked. An exam that ended is refused with ``repair``.
    """
    scan = scan_journal(out_dir / JOURNAL)
    rec = _Builder(out_dir, scan).build()
    if repair:
        ensure_resumable(rec, out_dir)
        rec.torn = _repair_tail(scan)
    return rec


def ensure_resumable(rec: RecoveredExam, out_dir: Path) -> None:
    """:class:`RecoveryError` if the exam already ended (completed, aborted or faulted)."""
    if rec.finished is None:
        return
    how = rec.finished + (f": {rec.finished_reason}" if rec.finished_reason else "")
    raise RecoveryError(f"{out_dir}: the exam already ended ({how}); nothing to resume")


@dataclass
class _Image:
    """What an image file says about itself."""

    name: str
    sop_uid: str
    step: str | None  # protocol step
    layer_mm: float | None
    instance: int
    device_s: float | None
    frames: int
    kind: str
    kerma_mgy: float
    dap_gy_cm2: float


class _Builder:
    def __init__(self, out_dir: Path, scan: JournalScan) -> None:
        self.out_dir = out_dir
        self.scan = scan
        self.events = scan.events
        start = self.events[0].data
        self.context: dict[str, Any] = dict(start["context"])
        self.step_ids: list[str] = list(start["steps"])
        try:
            self.protocol = Protocol.model_validate(self.context["protocol"])
        except ValidationError as exc:
            raise RecoveryError(
                f"{scan.path}:1: the resume context's protocol is invalid "
                f"({exc.error_count()} error(s)); {_UNCHANGED}"
            ) from None
        if [s.id for s in self.protocol.steps] != self.step_ids:
            raise RecoveryError(
                f"{scan.path}:1: exam_started's steps differ from its protocol; {_UNCHANGED}"
            )
        self.study = str(self.context["exam"]["study_instance_uid"])
        w0 = self.context.get("wall_at_loop0")
        self.wall0 = dt.datetime.fromisoformat(str(w0)) if w0 is not None else None
        self.ignored: list[IgnoredFile] = []

    def build(self) -> RecoveredExam:
        steps = {sid: StepRecord() for sid in self.step_ids}
        prior: list[PriorCapture] = []
        anchor: float | None = None
        injection_commanded = False
        position = "supine"
        in_flight: InFlight | None = None
        faults: list[str] = []
        finished: str | None = None
        finished_reason = ""
        resumes = 0
        commands: dict[str, tuple[float, float | None]] = {}  # step → (t_s, planned_s)
        for e in self.events:
            d = e.data
            sid = e.step
            if e.kind == "exam_resumed":
                resumes += 1
            elif e.kind == "exam_finished":
                finished = str(d.get("state"))
                finished_reason = str(d.get("reason") or "")
            elif e.kind == "injection_confirmed":
                anchor = float(d["started_at_s"])
            elif e.kind == "command" and d.get("command") == "start_injection":
                injection_commanded = True
            elif e.kind in ("fault", "device_lost"):
                faults.append(str(d.get("fault") or d.get("error") or e.kind))
            elif e.kind == "confirmed" and d.get("action") == "reposition" and d.get("position"):
                position = str(d["position"])
            if sid is None:
                continue
            if e.kind == "command" and d.get("command") in _FIRE_ONCE:
                planned = d.get("planned_s")
                commands[sid] = (e.t_s, None if planned is None else float(planned))
            if e.kind == "step_done":
                rec = steps[sid]
                rec.status = str(d.get("status", "done"))
                rec.detail = str(d.get("detail", ""))
                rec.planned_after_injection_s = d.get("planned_after_injection_s")
                rec.planned_s = d.get("planned_s")
                rec.commanded_s = d.get("commanded_s")
                rec.device_s = d.get("device_s")
                rec.files = list(d.get("files", []))
                if in_flight is not None and in_flight.step == sid:
                    in_flight = None
                continue
            if steps[sid].status != "pending":
                continue  # events of a finished step (late device events) change nothing
            if in_flight is None or in_flight.step != sid:
                in_flight = InFlight(sid)
            if e.kind == "command" and d.get("command") in ("expose", "fluoro", "tomo"):
                in_flight.commanded.append(str(d["command"]))
                in_flight.command_t_s = e.t_s
                kb = d.get("kerma_before_mgy")
                in_flight.kerma_before_mgy = None if kb is None else float(kb)
                in_flight.beam_seen = False
            elif e.kind == "command" and d.get("command") == "start_injection":
                in_flight.commanded.append("start_injection")
                in_flight.command_t_s = e.t_s
            elif e.kind in BEAM_EVENTS and e.source != "scheduler":
                in_flight.beam_seen = True
            elif e.kind == "capture_retry":
                in_flight.beam_seen = False
            elif e.kind == "capture":
                in_flight.files.append(str(d["file"]))
            if e.kind == "capture":
                prior.append(
                    PriorCapture(
                        sid,
                        str(d["file"]),
                        _int(d.get("frames"), 1),
                        _float(d.get("reference_air_kerma_mgy")),
                        d.get("after_injection_s"),
                        str(d.get("image_kind", "radiograph")),
                        dap_gy_cm2=_float(d.get("dap_gy_cm2")),
                    )
                )
        missing = [p.file for p in prior if not (self.out_dir / p.file).exists()]
        if missing:
            raise RecoveryError(f"{self.out_dir}: journal lists images missing on disk: {missing}")

        listed = {p.file: p for p in prior}
        images = self._images(set(listed))
        instance = max((i.instance for i in images.values()), default=0)
        instance = max(instance, self._highest_number_on_disk())
        adopted: list[str] = []
        for img in sorted(images.values(), key=lambda i: (i.instance, i.name)):
            if img.name in listed or img.step is None:
                continue
            after = None if anchor is None or img.device_s is None else img.device_s - anchor
            prior.append(
                PriorCapture(
                    img.step,
                    img.name,
                    img.frames,
                    img.kerma_mgy,
                    after,
                    img.kind,
                    recovered_from_disk=True,
                    dap_gy_cm2=img.dap_gy_cm2,
                )
            )
            adopted.append(img.name)
            if steps[img.step].status != "pending":
                steps[img.step].files.append(img.name)  # finished already: list it there

        in_flight = self._settle(steps, in_flight, prior, images, set(adopted), commands, anchor)
        events = self.events
        return RecoveredExam(
            context=self.context,
            steps=steps,
            in_flight=in_flight,
            injection_start_s=anchor,
            injection_commanded=injection_commanded,
            position=position,
            prior=prior,
            last_seq=events[-1].seq,
            last_t_s=max(e.t_s for e in events),
            started_s=events[0].t_s,
            instance=instance,
            resumes=resumes,
            faults=faults,
            finished=finished,
            finished_reason=finished_reason,
            ignored=self.ignored,
            adopted=adopted,
            torn=self.scan.torn,
        )

    def _settle(
        self,
        steps: dict[str, StepRecord],
        in_flight: InFlight | None,
        prior: list[PriorCapture],
        images: dict[str, _Image],
        adopted: set[str],
        commands: dict[str, tuple[float, float | None]],
        anchor: float | None,
    ) -> InFlight | None:
        """Settle every unfinished step whose images are all on disk; a partial one flies."""
        for step in self.protocol.steps:
            if not isinstance(step, CaptureStep | FluoroStep | TomoStep):
                continue
            rec = steps[step.id]
            files = [p.file for p in prior if p.step == step.id]
            if rec.status != "pending" or not files:
                continue
            expected, have = 1, len(files)
            if isinstance(step, TomoStep):
                # Distinct layers (by the image's own Tomo Layer Height), not files.
                expected = len(step.layer_heights_mm)
                have = len(
                    {
                        f if img is None or img.layer_mm is None else round(img.layer_mm, 3)
                        for f in files
                        for img in [images.get(f)]
                    }
                )
            if have >= expected:
                rec.status = "done"
                rec.detail = ADOPTED_DETAIL if adopted.intersection(files) else JOURNALED_DETAIL
                rec.files = files
                rec.settled_on_resume = True
                rec.planned_after_injection_s = step.at
                t_cmd, planned = commands.get(step.id, (None, None))
                rec.commanded_s = t_cmd
                if planned is None and step.at is not None and anchor is not None:
                    planned = anchor + step.at
                rec.planned_s = planned
                times = [
                    img.device_s
                    for f in files
                    if (img := images.get(f)) is not None and img.device_s is not None
                ]
                rec.device_s = min(times) if times else None
                if in_flight is not None and in_flight.step == step.id:
                    in_flight = None
                continue
            # A tomosynthesis series partly on disk: the runner finishes it as in flight.
            if in_flight is not None and in_flight.step != step.id:
                raise RecoveryError(
                    f"{self.out_dir}: step {step.id!r} has {have} of {expected} images on "
                    f"disk while step "
                    f"{in_flight.step!r} was in flight; cannot settle both; {_UNCHANGED}"
                )
            if in_flight is None:
                in_flight = InFlight(step.id)
            in_flight.files.extend(f for f in files if f not in in_flight.files)
        return in_flight

    # -- the files ----------------------------------------------------------------------------

    def _images(self, listed: set[str]) -> dict[str, _Image]:
        """Every image file of this exam in the folder, by name; others go to ``ignored``."""
        candidates = self._step_candidates()
        images: dict[str, _Image] = {}
        seen: dict[str, str] = {}  # SOP Instance UID → file
        try:
            names = sorted(os.listdir(self.out_dir))
        except OSError as exc:
            raise RecoveryError(f"{self.out_dir}: cannot list the folder: {exc}") from None
        # Files the journal lists first: a copy of one of them is the copy, not the original.
        names.sort(key=lambda n: n not in listed)
        for name in names:
            if name in _OWN_ENTRIES or name.startswith(JOURNAL + TORN_SUFFIX):
                continue
            if _TEMP_IMAGE.match(name):
                self._ignore(name, "temporary file of an image write that never completed")
                continue
            if not name.lower().endswith(".dcm"):
                self._ignore(name, "not a file of this exam")
                continue
            path = self.out_dir / name
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                self._ignore(name, f"cannot be read ({exc.strerror or exc})")
                continue
            if not stat.S_ISREG(mode):
                self._ignore(name, "not a regular file")
                continue
            img = self._identify(name, path, candidates, listed)
            if img is None:
                continue
            if img.sop_uid in seen:
                if name not in listed:
                    self._ignore(name, f"a copy of {seen[img.sop_uid]} (same SOP Instance UID)")
                    continue
            else:
                seen[img.sop_uid] = name
            images[name] = img
        return images

    def _step_candidates(self) -> dict[str, str]:
        """Acquisition UID → protocol step, for every step that takes images."""
        return {
            acquisition_uid_for(self.study, s.id): s.id
            for s in self.protocol.steps
            if isinstance(s, CaptureStep | FluoroStep | TomoStep)
        }

    def _identify(
        self, name: str, path: Path, candidates: dict[str, str], listed: set[str]
    ) -> _Image | None:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return self._match(name, ds, candidates, listed)
        except Exception as exc:  # any damage: the file is not adopted
            if name not in listed:
                self._ignore(name, f"unreadable as DICOM ({type(exc).__name__}: {exc})")
            return None

    def _match(
        self, name: str, ds: pydicom.Dataset, candidates: dict[str, str], listed: set[str]
    ) -> _Image | None:
        """The image ``ds`` is, if it is one of this exam's; else None (and why, ignored)."""
        sop_class = str(ds.get("SOPClassUID", ""))
        study = str(ds.get("StudyInstanceUID", ""))
        sop_uid = str(ds.get("SOPInstanceUID", ""))
        number = ds.get("InstanceNumber")
        instance = int(number) if number is not None else None
        acq_uid = ds.get("AcquisitionUID")
        if name in listed:  # the journal vouches for it and names its step
            return self._image(name, ds, sop_uid, None, instance or 0)
        if study != self.study:
            self._ignore(name, f"an image of another study ({study or 'no Study Instance UID'})")
            return None
        if sop_class != XRF_IMAGE_STORAGE:
            self._ignore(name, f"not an X-ray image of this exam (SOP class {sop_class})")
            return None
        if instance is None or sop_uid != instance_uid_for(self.study, instance):
            self._ignore(name, "its SOP Instance UID is not one this exam gives its images")
            return None
        step = candidates.get(str(acq_uid)) if acq_uid is not None else self._step_by_name(name)
        if step is None:
            self._ignore(name, "it names no image-taking step of this exam")
            return None
        return self._image(name, ds, sop_uid, step, instance)

    def _image(
        self, name: str, ds: pydicom.Dataset, sop_uid: str, step: str | None, instance: int
    ) -> _Image:
        return _Image(
            name,
            sop_uid,
            step,
            _ds_float(ds.get("TomoLayerHeight")),
            instance,
            self._loop_time(ds),
            _int(ds.get("NumberOfFrames"), 1),
            _kind(ds),
            _reference_kerma(ds),
            (_ds_float(ds.get("ImageAndFluoroscopyAreaDoseProduct")) or 0.0) / 10.0,
        )

    def _step_by_name(self, name: str) -> str | None:
        """Images written before the Acquisition UID existed: the step in the file name."""
        m = _FILE.match(name)
        if m is None:
            return None
        stem = m.group(2)
        for sid in sorted(self.step_ids, key=len, reverse=True):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sid)
            if stem == safe or stem.startswith(safe + "-"):
                return sid
        return None

    def _loop_time(self, ds: pydicom.Dataset) -> float | None:
        """The image's acquisition moment on the exam's loop time axis."""
        value = ds.get("AcquisitionDateTime")
        if value is None or self.wall0 is None:
            return None
        try:
            text = str(value)
            stamp = dt.datetime.strptime(text[:21], "%Y%m%d%H%M%S.%f").replace(tzinfo=dt.UTC)
            return (stamp - self.wall0).total_seconds()
        except (ValueError, TypeError):
            return None

    def _highest_number_on_disk(self) -> int:
        """New images are numbered past every ``NNN-`` name in the folder, strays included."""
        highest = 0
        for name in os.listdir(self.out_dir):
            m = re.match(r"^(\d{3,})-", name)
            if m is not None:
                highest = max(highest, int(m.group(1)))
        return highest

    def _ignore(self, name: str, reason: str) -> None:
        self.ignored.append(IgnoredFile(name, reason))


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _float(value: object) -> float:
    return float(value) if _is_number(value) else 0.0  # type: ignore[arg-type]


def _ds_float(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _kind(ds: pydicom.Dataset) -> str:
    if str(ds.get("ScanOptions", "")) == "TOMO":
        return "tomo"
    if str(ds.get("RadiationSetting", "")) == "SC":
        return "fluoro"
    return "radiograph"


def _reference_kerma(ds: pydicom.Dataset) -> float:
    """Reference-point air kerma from the image's own dose data (inverse square), or 0."""
    entrance = _ds_float(ds.get("EntranceDoseInmGy"))
    d_entrance = _ds_float(ds.get("DistanceSourceToEntrance"))
    d_isocentre = _ds_float(ds.get("DistanceSourceToPatient"))
    if entrance is None or d_entrance is None or d_isocentre is None:
        return 0.0
    d_reference = d_isocentre - 150.0  # IEC 60601-2-43: 15 cm source side of the isocentre
    return entrance * (d_entrance / d_reference) ** 2 if d_reference > 0 else 0.0


# -- the one repair ---------------------------------------------------------------------------


def _repair_tail(scan: JournalScan) -> TornTail | None:
    """Keep a torn last line in a side file, then cut it; terminate an unterminated record."""
    path = scan.path
    if scan.torn is None and not scan.unterminated:
        return None
    with path.open("r+b") as f:
        if os.fstat(f.fileno()).st_size != scan.size:
            raise RecoveryError(f"{path}: the journal changed while it was read; {_UNCHANGED}")
        if scan.unterminated:
            f.seek(scan.size)
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return None
        assert scan.torn is not None
        f.seek(scan.good)
        tail = f.read()
        side = _keep_tail(path, scan.torn.line, tail)
        f.truncate(scan.good)
        f.flush()
        os.fsync(f.fileno())
    torn = scan.torn
    return TornTail(torn.line, torn.offset, torn.size, side.name)


def _keep_tail(path: Path, line: int, tail: bytes) -> Path:
    """Write ``tail`` to a new side file (``events.jsonl.torn-<line>[.k]``), fsynced."""
    for k in range(1000):
        side = path.with_name(f"{path.name}{TORN_SUFFIX}{line}" + (f".{k}" if k else ""))
        try:
            fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        try:
            view = memoryview(tail)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return side
    raise RecoveryError(f"{path}: no free name to keep the torn last line; {_UNCHANGED}")
