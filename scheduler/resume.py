"""`fluoroctl resume DIR`: continue an exam whose controlling process died.

1. :func:`resume_loop` checks, changing nothing, that no other process holds the folder and
   that :func:`~scheduler.recovery.reconstruct` accepts it (a journal damaged anywhere but a
   torn last line, or an exam that already ended, is refused); then makes the event loop:
   on virtual time it starts at the journal's last time, so loop time — and with it the
   injection anchor and every planned time point — is the original one; the wall anchor
   recorded at the start (``wall_at_loop0``) keeps DICOM and journal timestamps continuous.
2. :func:`resume_exam` takes the folder's lock (:mod:`scheduler.exam_dir`) for the whole
   exam, *then* reconstructs with ``repair`` (a torn last line kept in a side file and cut)
   and *reattaches*: it opens the room's devices from the room recorded in the journal.
   That is all a room that kept running needs (``sim serve``, real equipment): the devices
   report where they are. The in-process simulator died with the process, so it is given
   ``restore_from`` (its own saved state, see hardware_sim/persist.py) and comes back as it
   was: the contrast given at the original time, the bladder as filled.
3. The runner adopts the finished steps and images (every image on disk, matched by its own
   attributes), settles the in-flight step without ever replaying a fire-once action, and
   runs the rest relative to the original injection start.

Files in the folder that are not the exam's (another study's image, a damaged ``.dcm``,
anything unknown) are left untouched, never adopted, and listed in ``summary.json`` under
``resumed.ignored_files``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from drivers import Clock, VirtualTimeEventLoop, new_event_loop

from .compose import RunOutcome, make_operator, open_devices
from .exam import SIM_STATE_DIR, ExamProgress, ExamResult, ExamRunner, exam_from_json
from .exam.hooks import install_operated_exam_hooks
from .exam.identity import identity_summary
from .exam_dir import ExamFolderError, ExamFolderLock, lock_exam_folder, probe_exam_folder
from .hospital.session import attach as attach_pacs
from .journal import ExamEvent
from .orders import Order
from .outputs import ContactSheetEntry, write_contact_sheet
from .outputs.dose_report import write_dose_outputs
from .paths import PROJECT_ROOT
from .protocol import Protocol
from .records import ExamInfo
from .recovery import RecoveredExam, RecoveryError, ensure_resumable, reconstruct
from .room import Room
from .summary import build_summary, write_summary

__all__ = ["RecoveryError", "resume_exam", "resume_loop"]

log = logging.getLogger(__name__)


def resume_loop(out_dir: Path) -> asyncio.AbstractEventLoop:
    """The event loop a resumed exam runs on, on the crashed process's time axis.

    Changes nothing in ``out_dir``. :class:`RecoveryError` when another process holds the
    folder, the journal is damaged or the exam already ended.

    Virtual loops start at the journal's last time. Scaled and real loops use the clock
    mapping the journal recorded (``origin_monotonic``, ``scale``): loop time is
    ``(time.monotonic() - origin) * scale`` in both processes, so the injection anchor and
    every device time mapped onto the host clock keep their meaning.
    """
    try:
        probe_exam_folder(out_dir)
    except ExamFolderError as exc:
        raise RecoveryError(str(exc)) from None
    rec = reconstruct(out_dir)
    ensure_resumable(rec, out_dir)
    mapping = rec.context.get("clock") or {}
    mode = mapping.get("mode") or ("virtual" if rec.context.get("virtual_time") else "real")
    if mode == "virtual":
        return VirtualTimeEventLoop(start=rec.last_t_s)
    origin = mapping.get("origin_monotonic")
    scale = float(mapping.get("scale") or 1.0)
    if mode == "scaled" or (origin is not None and abs(float(origin)) > 1e-3):
        try:
            return new_event_loop(
                "scaled",
                time_scale=scale,
                origin_monotonic=None if origin is None else float(origin),
            )
        except ValueError as exc:  # an origin from another boot
            raise RecoveryError(f"{out_dir}: cannot continue the exam's clock: {exc}") from None
    return new_event_loop("real")


def _lock(out_dir: Path) -> ExamFolderLock:
    try:
        return lock_exam_folder(out_dir)
    except ExamFolderError as exc:  # `fluoroctl resume` maps RecoveryError to exit 2
        raise RecoveryError(str(exc)) from None


async def resume_exam(
    out_dir: Path,
    *,
    operator_mode: str | None = None,
    progress: ExamProgress | None = None,
    on_event: Callable[[ExamEvent], None] | None = None,
) -> RunOutcome:
    """Continue the exam in ``out_dir``, holding the folder's lock until it ends.

    :class:`RecoveryError` (nothing changed) when another process holds the folder, the
    journal is damaged, or the exam already ended.
    """
    with _lock(out_dir):
        return await _resume_locked(out_dir, operator_mode, progress, on_event)


async def _resume_locked(
    out_dir: Path,
    operator_mode: str | None,
    progress: ExamProgress | None,
    on_event: Callable[[ExamEvent], None] | None,
) -> RunOutcome:
    wall0 = time.perf_counter()
    rec = reconstruct(out_dir, repair=True)
    ctx = rec.context
    protocol = Protocol.model_validate(ctx["protocol"])
    room = Room.model_validate(ctx["room"])
    loop = asyncio.get_running_loop()
    wall_at_loop0 = dt.datetime.fromisoformat(ctx["wall_at_loop0"])
    clock = Clock(loop, wall_at_loop0 + dt.timedelta(seconds=loop.time()))
    options: dict[str, Any] = {}
    if ctx.get("patient"):
        options["patient"] = ctx["patient"]
    state_dir = out_dir / SIM_STATE_DIR
    if (state_dir / "room-state.json").exists():
        options["restore_from"] = str(state_dir)
        # Loop times carry over unchanged: a virtual loop restarts at the journal's time, a
        # real one is time.monotonic(), which runs on across a process restart.
        options["restore_shift_s"] = 0.0
    # Reattach: a room that kept running (sim serve, equipment) is reached over the links as
    # resolved when the exam began; its devices report where they are.
    links = ctx.get("links")
    devices = await open_devices(
        room,
        clock,
        PROJECT_ROOT,
        options,
        dict(links) if isinstance(links, dict) else None,
        out_dir,
    )
    try:
        exam = exam_from_json(ctx["exam"])
        runner = ExamRunner(
            protocol,
            room,
            devices,
            clock,
            make_operator(room, clock, operator_mode or str(ctx.get("operator", ""))),
            out_dir,
            exam,
            progress=progress or ExamProgress(protocol.name),
            on_event=on_event,
            recovered=rec,
        )
        install_operated_exam_hooks(runner.bus, clock)
        pacs = attach_pacs(runner.bus, room, exam, out_dir)  # None without dicom peers

        def finish(result: ExamResult) -> dict[str, Any]:
            """Contact sheet, dose SR and report, summary, on every end (Ctrl-C and bugs
            included); the SR before the PACS session queues the folder."""
            try:
                files = _exam_files(rec, result.steps)
                write_sheet_from_disk(
                    out_dir, f"{protocol.name} | {exam.patient.name} (resumed)", files
                )
            except (OSError, ValueError) as exc:
                log.error("contact sheet not written: %s", exc)
            summary = build_summary(
                result,
                exam,
                clock,
                time.perf_counter() - wall0,
                str(ctx.get("protocol_path", protocol.name)),
                room.name,
            )
            summary.update(_identity_of(ctx, exam))
            summary["resumed"] = resume_report(rec)
            summary["dose"] = write_dose_outputs(out_dir, exam, ended=clock.wall_at(result.ended_s))
            try:
                write_summary(summary, out_dir / "summary.json")
            except OSError as exc:
                log.error("summary.json not written: %s", exc)
            return summary

        try:
            result = await runner.run()
        except BaseException:
            if runner.result is not None:
                summary = finish(runner.result)
                if pacs is not None:
                    pacs.finish(summary, wait=False)  # queued for `dicom flush`
            elif pacs is not None:
                pacs.stop()
            raise
        summary = finish(result)
        if pacs is not None:
            summary = await asyncio.to_thread(pacs.finish, summary)
        return RunOutcome(result, summary, out_dir)
    finally:
        await devices.aclose()


def resume_report(rec: RecoveredExam) -> dict[str, Any]:
    """What the restart found, for ``summary.json``'s ``resumed`` entry."""
    return {
        "after_seq": rec.last_seq,
        "resumes": rec.resumes + 1,
        "adopted_from_disk": list(rec.adopted),
        "ignored_files": [{"file": i.file, "reason": i.reason} for i in rec.ignored],
        "journal_torn_tail": None
        if rec.torn is None
        else {"line": rec.torn.line, "bytes": rec.torn.size, "kept_in": rec.torn.side_file},
    }


def _exam_files(rec: RecoveredExam, steps: Sequence[Any]) -> list[str]:
    """The exam's images: before the restart (journal and adopted) and after, once each."""
    names = [p.file for p in rec.prior]
    for step in steps:
        names.extend(step.files)
    return list(dict.fromkeys(names))


def write_sheet_from_disk(out_dir: Path, header: str, files: Iterable[str] | None = None) -> None:
    """The contact sheet from the DICOM files themselves (images from before and after).

    Only ``files`` (default: every ``NNN-*.dcm``) are read; one that cannot be read as an
    image is left off the sheet rather than stopping it.
    """
    names = (
        sorted(p.name for p in out_dir.glob("[0-9][0-9][0-9]-*.dcm"))
        if files is None
        else sorted(files)
    )
    entries: list[ContactSheetEntry] = []
    for name in names:
        entry = _sheet_entry(out_dir / name)
        if entry is not None:
            entries.append(entry)
    if entries:
        write_contact_sheet(entries, out_dir / "contact-sheet.png", header=header)


def _sheet_entry(path: Path) -> ContactSheetEntry | None:
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        if pixels.ndim == 3:
            pixels = pixels[len(pixels) // 2]
        if pixels.ndim != 2:
            return None
        bits = int(getattr(ds, "BitsStored", 12))
        display = (pixels.astype(np.float32) * (255.0 / ((1 << bits) - 1))).clip(0, 255)
        return ContactSheetEntry(
            display.astype(np.uint8), path.stem, str(ds.get("ImageComments", ""))
        )
    except Exception:  # a damaged file is left off the sheet, never fatal
        return None


def _identity_of(ctx: dict[str, Any], exam: ExamInfo) -> dict[str, Any]:
    """``identity`` (and ``contrast_by_weight``) for ``summary.json``, as the first process
    wrote them into the journal's ``exam_started`` context."""
    order_json = ctx.get("order")
    try:
        order = Order.model_validate(order_json) if isinstance(order_json, dict) else None
    except ValueError:
        order = None  # a journal written by another version: the exam's own identity stands
    source = str(ctx.get("identity_source") or ("scenario" if order is None else "order-file"))
    out: dict[str, Any] = {"identity": identity_summary(exam, order, source)}
    weighted = ctx.get("contrast_by_weight")
    if isinstance(weighted, dict):
        out["contrast_by_weight"] = weighted
    return out
