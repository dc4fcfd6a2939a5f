"""Reconstructs an interrupted exam from its directory: the journal plus the files on disk.

The journal (events.jsonl) is the record; every step that ended wrote a ``step_done`` line,
every image a ``capture`` line *after* its DICOM file was renamed into place. So after a
crash:

* a step with ``step_done`` is finished, with the status and files recorded there;
* a DICOM file on disk with no ``capture`` line was written just before the crash: it is
  adopted (listed, never re-acquired);
* the first step without ``step_done`` was in flight: :class:`RecoveredExam` says whether its
  fire-once command was sent (``command`` line) and whether a device reported the beam on or
  the injection started, so the runner can decide without ever replaying a fire-once action.

A torn last line (the process died mid-write) is dropped and cut from the file before the
resumed run appends to it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .journal import ExamEvent

#: device events meaning radiation was produced (the acquisition happened)
BEAM_EVENTS = frozenset({"exposure", "fluoro_started", "tomo_started", "frames_dropped"})
_FILE = re.compile(r"^(\d{3,})-(.+)\.dcm$")


class RecoveryError(Exception):
    """The directory does not hold a resumable exam; the message says why."""


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


@dataclass
class InFlight:
    """The step that was running when the process died."""

    step: str
    commanded: list[str] = field(default_factory=list)  # fire-once commands sent
    command_t_s: float | None = None  # last fire-once command's time
    kerma_before_mgy: float | None = None  # C-arm's cumulative air kerma before it
    beam_seen: bool = False  # a device reported radiation for it
    files: list[str] = field(default_factory=list)  # images already written for it


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


def read_journal(path: Path, *, repair: bool = False) -> list[ExamEvent]:
    """Every complete line of ``path``; with ``repair`` a torn last line is cut off the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecoveryError(f"{path}: no journal (is this an exam directory?)") from None
    events: list[ExamEvent] = []
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            events.append(ExamEvent.model_validate_json(line))
        except ValueError:
            break
        good += len(line)
    if repair and good < len(data):
        with path.open("r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return events


def _step_of_file(name: str, step_ids: list[str]) -> tuple[int, str] | None:
    m = _FILE.match(name)
    if m is None:
        return None
    stem = m.group(2)
    for sid in sorted(step_ids, key=len, reverse=True):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sid)
        if stem == safe or stem.startswith(safe + "-"):
            return int(m.group(1)), sid
    return None


def reconstruct(out_dir: Path, *, repair: bool = False) -> RecoveredExam:
    events = read_journal(out_dir / "events.jsonl", repair=repair)
    if not events or events[0].kind != "exam_started":
        raise RecoveryError(f"{out_dir}: the journal does not begin with exam_started")
    context = dict(events[0].data.get("context") or {})
    if not context:
        raise RecoveryError(f"{out_dir}: the journal has no resume context (older version?)")
    step_ids: list[str] = list(events[0].data.get("steps", []))
    steps = {sid: StepRecord() for sid in step_ids}
    prior: list[PriorCapture] = []
    anchor: float | None = None
    injection_commanded = False
    position = "supine"
    in_flight: InFlight | None = None
    faults: list[str] = []
    finished: str | None = None
    resumes = 0
    for e in events:
        d = e.data
        sid = e.step
        if e.kind == "exam_resumed":
            resumes += 1
        elif e.kind == "exam_finished":
            finished = str(d.get("state"))
        elif e.kind == "injection_confirmed":
            anchor = float(d["started_at_s"])
        elif e.kind == "command" and d.get("command") == "start_injection":
            injection_commanded = True
        elif e.kind in ("fault", "device_lost"):
            faults.append(str(d.get("fault") or d.get("error") or e.kind))
        elif e.kind == "confirmed" and d.get("action") == "reposition" and d.get("position"):
            position = str(d["position"])
        if sid is None or sid not in steps:
            continue
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
                    int(d.get("frames", 1)),
                    float(d.get("reference_air_kerma_mgy") or 0.0),
                    d.get("after_injection_s"),
                    str(d.get("image_kind", "radiograph")),
                    dap_gy_cm2=float(d.get("dap_gy_cm2") or 0.0),
                )
            )
    # Images written just before the crash, whose capture line never made it.
    listed = {p.file for p in prior}
    instance = max((int(m.group(1)) for p in prior if (m := _FILE.match(p.file))), default=0)
    for path in sorted(out_dir.glob("*.dcm")):
        found = _step_of_file(path.name, step_ids)
        if found is None:
            continue
        number, sid = found
        instance = max(instance, number)
        if path.name in listed:
            continue
        prior.append(PriorCapture(sid, path.name, 0, 0.0, None, "unknown", True))
        if steps[sid].status == "pending":
            if in_flight is None or in_flight.step != sid:
                in_flight = InFlight(sid)
            in_flight.files.append(path.name)
    missing = [p.file for p in prior if not (out_dir / p.file).exists()]
    if missing:
        raise RecoveryError(f"{out_dir}: journal lists images missing on disk: {missing}")
    return RecoveredExam(
        context=context,
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
    )
