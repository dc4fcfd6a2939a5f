"""Rebuilding the exam from its checked journal and the images on disk."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..protocol import CaptureStep, FluoroStep, Protocol, TomoStep
from ._disk import (
    _DiskImages,
    _float,
    _Image,
    _int,
)
from ._journal import (
    _repair_tail,
    scan_journal,
)
from ._records import (
    _FIRE_ONCE,
    _UNCHANGED,
    ADOPTED_DETAIL,
    BEAM_EVENTS,
    JOURNAL,
    JOURNALED_DETAIL,
    IgnoredFile,
    InFlight,
    JournalScan,
    PriorCapture,
    RecoveredExam,
    RecoveryError,
    StepRecord,
)


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


class _Builder(_DiskImages):
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
        root = self.context["exam"].get("uid_root")
        #: the room's UID root the exam's UIDs were made under (None: 2.25 UUID UIDs)
        self.uid_root = str(root) if root else None
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
