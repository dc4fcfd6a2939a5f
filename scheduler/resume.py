"""`fluoroctl resume DIR`: continue an exam whose controlling process died.

1. :func:`~scheduler.recovery.reconstruct` reads the journal (cutting a torn last line) and
   the images on disk.
2. :func:`resume_loop` makes the event loop: on virtual time it starts at the journal's last
   time, so loop time — and with it the injection anchor and every planned time point — is
   the original one; the wall anchor recorded at the start (``wall_at_loop0``) keeps DICOM
   and journal timestamps continuous.
3. :func:`resume_exam` *reattaches*: it opens the room's devices from the room recorded in
   the journal. That is all a room that kept running needs (``sim serve``, real equipment):
   the devices report where they are. The in-process simulator died with the process, so it
   is given ``restore_from`` (its own saved state, see hardware_sim/persist.py) and comes
   back as it was: the contrast given at the original time, the bladder as filled.
4. The runner adopts the finished steps and images, settles the in-flight step without ever
   replaying a fire-once action, and runs the rest relative to the original injection start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from drivers import Clock, VirtualTimeEventLoop, new_event_loop

from .compose import RunOutcome, make_operator, open_devices
from .engine import SIM_STATE_DIR, ExamProgress, ExamRunner, exam_from_json
from .journal import ExamEvent
from .outputs import ContactSheetEntry, write_contact_sheet
from .paths import PROJECT_ROOT
from .protocol import Protocol
from .recovery import RecoveryError, reconstruct
from .room import Room
from .summary import build_summary, write_summary

__all__ = ["RecoveryError", "resume_exam", "resume_loop"]


def resume_loop(out_dir: Path) -> asyncio.AbstractEventLoop:
    """The event loop a resumed exam runs on, on the crashed process's time axis.

    Virtual loops start at the journal's last time. Scaled and real loops use the clock
    mapping the journal recorded (``origin_monotonic``, ``scale``): loop time is
    ``(time.monotonic() - origin) * scale`` in both processes, so the injection anchor and
    every device time mapped onto the host clock keep their meaning.
    """
    rec = reconstruct(out_dir)
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


async def resume_exam(
    out_dir: Path,
    *,
    operator_mode: str | None = None,
    progress: ExamProgress | None = None,
    on_event: Callable[[ExamEvent], None] | None = None,
) -> RunOutcome:
    wall0 = time.perf_counter()
    rec = reconstruct(out_dir, repair=True)
    if rec.finished is not None:
        raise RecoveryError(
            f"{out_dir}: the exam already ended ({rec.finished}); nothing to resume"
        )
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
        room, clock, PROJECT_ROOT, options, dict(links) if isinstance(links, dict) else None
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
        try:
            result = await runner.run()
        finally:
            write_sheet_from_disk(out_dir, f"{protocol.name} | {exam.patient.name} (resumed)")
        summary = build_summary(
            result,
            exam,
            clock,
            time.perf_counter() - wall0,
            str(ctx.get("protocol_path", protocol.name)),
            room.name,
        )
        summary["resumed"] = {"after_seq": rec.last_seq, "resumes": rec.resumes + 1}
        write_summary(summary, out_dir / "summary.json")
        return RunOutcome(result, summary, out_dir)
    finally:
        await devices.aclose()


def write_sheet_from_disk(out_dir: Path, header: str) -> None:
    """The contact sheet from the DICOM files themselves (images from before and after)."""
    entries: list[ContactSheetEntry] = []
    for path in sorted(out_dir.glob("[0-9][0-9][0-9]-*.dcm")):
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        if pixels.ndim == 3:
            pixels = pixels[len(pixels) // 2]
        bits = int(getattr(ds, "BitsStored", 12))
        display = (pixels.astype(np.float32) * (255.0 / ((1 << bits) - 1))).clip(0, 255)
        entries.append(
            ContactSheetEntry(display.astype(np.uint8), path.stem, str(ds.get("ImageComments", "")))
        )
    if entries:
        write_contact_sheet(entries, out_dir / "contact-sheet.png", header=header)
