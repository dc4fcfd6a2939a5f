"""Wires a run together: room file → backend → devices; protocol → runner → outputs.

The only module that knows all the parts; the CLI and the tests both go through it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers import Clock
from drivers.backends import DeviceSet, RoomRequest, backend_for_links

from .exam import (
    ExamProgress,
    ExamResult,
    ExamRunner,
    RoomInfo,
)
from .exam.hooks import install_operated_exam_hooks
from .exam_dir import claim_new_exam_folder
from .hospital.session import attach as attach_pacs
from .journal import ExamEvent
from .operator import Operator, ScriptedOperator, TerminalOperator
from .order_exam import identify_exam
from .orders import Order, OrderSource
from .outputs import entry_for, write_contact_sheet
from .outputs.dose_report import write_dose_outputs
from .paths import PROJECT_ROOT
from .protocol import Protocol, load_protocol
from .records import CaptureRecord, ExamInfo
from .room import Room, load_room
from .summary import build_summary, write_summary
from .weight_dose import journal_at_inject_step

log = logging.getLogger(__name__)


#: simulator options that name a file: relative paths are from the room file's folder
FILE_OPTIONS = ("device_limits",)


def room_file_options(room: Room, room_path: Path) -> dict[str, Any]:
    """The room's file-valued options as absolute paths (from the room file's folder), so
    ``run``, ``sim serve`` and a later ``resume`` (which records them) read the same file."""
    out: dict[str, Any] = {}
    for key in FILE_OPTIONS:
        value = room.options.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str((room_path.parent / value).resolve())
    return out


def config_base_dir(room_path: Path) -> Path:
    """Directory that holds configs/ for a room file (for resolving patient names)."""
    for parent in room_path.resolve().parents:
        if (parent / "configs").is_dir():
            return parent
    return PROJECT_ROOT


async def open_devices(
    room: Room,
    clock: Clock,
    base_dir: Path,
    options: dict[str, Any],
    links: dict[str, str] | None = None,
    out_dir: Path | None = None,
) -> DeviceSet:
    """Open the room's devices; ``links`` are the resolved URLs (default: the room file's).
    ``out_dir``, the exam folder, names the exam to the devices (control of wire devices)."""
    links = links if links is not None else room.links
    backend = backend_for_links(links)
    key_file = Path(room.key_file) if room.key_file else None
    request = RoomRequest(
        links,
        clock,
        {**room.options, **options},
        base_dir,
        key_file=key_file,
        host_id=None if out_dir is None else exam_host_id(out_dir),
    )
    return await backend(request)


def exam_host_id(out_dir: Path) -> str:
    """The wire host id of the exam in ``out_dir``: the same for ``run`` and ``resume`` of that
    folder, so a resume after a crash takes the crashed process's control lease over instead
    of waiting for it to lapse (the id is continuity, not a credential: docs/security.md)."""
    digest = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()
    return f"exam-{digest[:16]}"


def make_operator(room: Room, clock: Clock, mode: str | None = None) -> Operator:
    chosen = mode or room.operator.mode
    if chosen == "scripted":
        return ScriptedOperator(clock, room.operator.delays_s)
    if chosen == "console":  # attached to its exam once the runner exists (run_exam)
        from .console import ConsoleOperator
        from .console.security import login_password

        password = login_password(room.console, room.key_file)
        return ConsoleOperator(clock, settings=room.console, password=password)
    return TerminalOperator(clock)


def finish_outputs(
    result: ExamResult,
    exam: ExamInfo,
    clock: Clock,
    out_dir: Path,
    *,
    wall0: float,
    protocol_path: Path,
    protocol_name: str,
    room_name: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Contact sheet, dose SR and report, and summary.json, on every end of an exam;
    returns the summary.

    Neither may hide the exam's outcome: a sheet that cannot be drawn or a summary that
    cannot be written (a full disk) is logged, and the images and journal stand.
    """
    if result.records:
        try:
            write_contact_sheet(
                [entry_for(r) for r in result.records],
                out_dir / "contact-sheet.png",
                header=f"{protocol_name} | {exam.patient.name} ({exam.patient.patient_id}) | "
                f"{exam.study_datetime:%Y-%m-%d %H:%M} UTC",
            )
        except (OSError, ValueError) as exc:
            log.error("contact sheet not written: %s", exc)
    summary = build_summary(
        result, exam, clock, time.perf_counter() - wall0, str(protocol_path), room_name
    )
    summary.update(extra or {})
    # the dose SR is in the folder before the PACS session queues it (the caller's next step)
    summary["dose"] = write_dose_outputs(out_dir, exam, ended=clock.wall_at(result.ended_s))
    try:
        write_summary(summary, out_dir / "summary.json")
    except OSError as exc:
        log.error("summary.json not written: %s", exc)
    return summary


@dataclass
class RunOutcome:
    result: ExamResult
    summary: dict[str, Any]
    out_dir: Path


async def run_exam(
    protocol_path: Path,
    room_path: Path,
    out_dir: Path,
    *,
    patient: str | None = None,
    operator_mode: str | None = None,
    wall_anchor: dt.datetime | None = None,
    progress: ExamProgress | None = None,
    on_event: Callable[[ExamEvent], None] | None = None,
    on_capture: Callable[[CaptureRecord], None] | None = None,
    protocol: Protocol | None = None,
    room: Room | None = None,
    links: dict[str, str] | None = None,
    force_new: bool = False,
    order: Order | None = None,
    order_source: OrderSource | None = None,
) -> RunOutcome:
    """Run one exam into ``out_dir``. ``order`` names the patient and the request (it wins
    over the simulated patient; without either the exam is marked UNIDENTIFIED); a
    weight-based protocol is worked out for the patient's weight (scheduler.order_exam)."""
    wall0 = time.perf_counter()
    protocol = protocol or load_protocol(protocol_path)
    room = room or load_room(room_path)
    clock = Clock.for_running_loop(wall_anchor)
    if room.clock == "virtual" and not clock.is_virtual:
        raise RuntimeError("room asks for virtual time but the loop is not a VirtualTimeEventLoop")
    # One controller per exam folder, taken before any device opens; held to the end.
    with claim_new_exam_folder(out_dir, force_new=force_new):
        options: dict[str, Any] = room_file_options(room, room_path)
        if patient:
            options["patient"] = patient
        devices = await open_devices(
            room, clock, config_base_dir(room_path), options, links, out_dir
        )
        try:
            # The order names the patient; on the simulator, the room's simulated patient is it.
            who = identify_exam(
                protocol,
                room,
                RoomInfo.of(devices),
                clock.wall_now(),
                order=order,
                source=order_source,
                protocol_path=protocol_path,
            )
            protocol, exam = who.protocol, who.exam
            operator = make_operator(room, clock, operator_mode)
            runner = ExamRunner(
                protocol,
                room,
                devices,
                clock,
                operator,
                out_dir,
                exam,
                progress=progress,
                on_capture=on_capture,
                on_event=on_event,
                context=who.journal_context(),
            )
            if who.weighted is not None:
                journal_at_inject_step(runner.bus, who.weighted)
            install_operated_exam_hooks(runner.bus, clock)
            attach = getattr(operator, "attach", None)  # the console serves this exam
            if attach is not None:
                attach(runner)
            pacs = attach_pacs(runner.bus, room, exam, out_dir)  # None without dicom peers
            where: dict[str, Any] = {
                "wall0": wall0,
                "protocol_path": protocol_path,
                "protocol_name": protocol.name,
                "room_name": room.name,
                "extra": who.summary(),
            }
            try:
                result = await runner.run()
            except BaseException:
                # Interrupted (Ctrl-C) or a bug: the runner has made the devices safe and
                # closed the record; the summary and contact sheet are still written.
                if runner.result is not None:
                    summary = finish_outputs(runner.result, exam, clock, out_dir, **where)
                    if pacs is not None:
                        pacs.finish(summary, wait=False)  # queued for `dicom flush`
                elif pacs is not None:
                    pacs.stop()
                raise
            summary = finish_outputs(result, exam, clock, out_dir, **where)
            if pacs is not None:
                summary = await asyncio.to_thread(pacs.finish, summary)
            return RunOutcome(result, summary, out_dir)
        finally:
            await devices.aclose()
