"""`fluoroctl run` and `resume`: an exam driven from the terminal, with its signals."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from drivers import Clock, DeviceError, new_event_loop
from drivers.config import ConfigError

from .cli_orders import check_order_weight, order_and_protocol
from .cli_tools import _warn
from .exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    exit_code_for,
)
from .links import (
    LinkConfigError,
    placeholders,
    resolve_links,
    wait_for_endpoints,
)
from .paths import default_room_path
from .protocol import load_protocol
from .room import Room, load_room
from .run_inputs import check_run_inputs

if TYPE_CHECKING:
    from .exam import ExamProgress


def _cmd_run(args: argparse.Namespace) -> int:
    room_path = args.room or default_room_path()
    given = load_protocol(args.protocol) if args.protocol is not None else None
    room = with_faults(load_room(room_path), args.fault)
    # Everything checkable is checked before anything is created or opened.
    ordered, protocol_file = order_and_protocol(args, room, room_path)
    protocol = given or load_protocol(protocol_file)
    check_order_weight(ordered, protocol, protocol_file, room)
    check_run_inputs(
        protocol_file,
        protocol,
        room_path,
        room,
        patient=args.patient,
        out_dir=args.out,
        warn=_warn,
    )
    if (args.operator or room.operator.mode) == "console":
        from .console.security import check_console

        check_console(room.console, room.key_file)
    links, time_scale = run_links(room, args)
    if ordered.warning:  # after every check: a refused run needs no warning
        _warn(f"warning: {ordered.warning}")
    if room.clock == "virtual":
        loop = new_event_loop("virtual")
    elif time_scale != 1.0:
        loop = new_event_loop("scaled", time_scale=time_scale)
    else:
        loop = new_event_loop("real")
    console = Console(stderr=True)

    from .compose import run_exam
    from .exam import ExamProgress
    from .progress import ProgressView

    progress = ExamProgress(protocol.name)

    async def go() -> int:
        view = ProgressView(progress, Clock.for_running_loop(), console)
        with view:
            outcome = await run_exam(
                protocol_file,
                room_path,
                args.out,
                patient=args.patient,
                operator_mode=args.operator,
                progress=progress,
                on_event=view.on_event,
                protocol=protocol,
                room=room,
                links=links,
                force_new=args.force_new,
                order=ordered.order,
                order_source=ordered.source,
            )
        _print_summary(console, outcome.summary)
        return exit_code_for(outcome.result)

    return _drive_exam(loop, go(), progress, console)


def _drive_exam(
    loop: asyncio.AbstractEventLoop,
    exam: Coroutine[Any, Any, int],
    progress: ExamProgress,
    console: Console,
) -> int:
    """Run an exam coroutine (``run`` or ``resume``) with the operator's signals wired."""
    task = loop.create_task(exam)
    # Ctrl-C cancels the exam task, whose cancellation path puts every device in its safe
    # state and closes the record, instead of unwinding out of the loop with devices live.
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    add_pause_controls(loop, progress, console)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        console.print(
            _interrupted_message(progress.abort_confirmations), highlight=False, soft_wrap=True
        )
        return EXIT_INTERRUPTED
    except DeviceError as exc:
        # Raised only before the exam starts (opening the room); later errors end the exam.
        console.print(
            f"error: cannot open the room's devices: {exc}", highlight=False, soft_wrap=True
        )
        return EXIT_FAILED
    finally:
        loop.close()


def _interrupted_message(confirmations: dict[str, str] | None) -> str:
    """What the abort confirmed, device by device: nothing is claimed that was not."""
    if confirmations is None:
        return "exam interrupted before it started: no device was commanded"
    safe = [role for role, answer in confirmations.items() if answer == "safe"]
    unsafe = {role: answer for role, answer in confirmations.items() if answer != "safe"}
    text = "exam aborted by the operator (interrupt); safe state confirmed by: " + (
        ", ".join(safe) or "none"
    )
    if unsafe:
        text += "; NOT confirmed: " + "; ".join(f"{r} ({a})" for r, a in unsafe.items())
        text += " — check these devices at the console"
    return text


#: operator controls of a running exam (``kill -USR1 PID`` pauses, ``kill -USR2 PID`` resumes)
PAUSE_SIGNALS = {signal.SIGUSR1: "pause", signal.SIGUSR2: "resume"}


def add_pause_controls(loop: asyncio.AbstractEventLoop, progress: Any, console: Console) -> None:
    """SIGUSR1 pauses the exam, SIGUSR2 resumes it; a refusal is journaled and printed."""

    def control(signum: signal.Signals) -> None:
        action = PAUSE_SIGNALS[signum]
        refused = progress.control(action, f"operator ({signum.name})")
        if refused is not None:
            console.print(f"{action} refused: {refused}", highlight=False)

    for signum in PAUSE_SIGNALS:
        loop.add_signal_handler(signum, control, signum)


def run_links(room: Room, args: argparse.Namespace) -> tuple[dict[str, str], float]:
    """The room's links with sim serve's endpoints filled in, and the time scale to run at."""
    if args.time_scale is not None and not (math.isfinite(args.time_scale) and args.time_scale > 0):
        raise LinkConfigError(f"--time-scale must be a positive number, got {args.time_scale:g}")
    endpoints_path = args.endpoints or (Path(room.endpoints_file) if room.endpoints_file else None)
    needs_endpoints = any(placeholders(url) for url in room.links.values())
    endpoints = (
        wait_for_endpoints(endpoints_path, on_wait=lambda msg: print(msg, file=sys.stderr))
        if endpoints_path and needs_endpoints
        else None
    )
    if needs_endpoints and endpoints is None:
        raise LinkConfigError(
            f"room {room.name!r} has ${{...}} in its links but no endpoints file: "
            "add endpoints_file to the room or pass --endpoints FILE"
        )
    links = resolve_links(
        room.links, endpoints=endpoints, broker=args.broker, room_broker=room.broker
    )
    scale = args.time_scale
    if room.clock == "virtual":
        if scale is not None:
            raise LinkConfigError(
                f"room {room.name!r} runs on virtual time (as fast as the machine allows); "
                "--time-scale is for rooms on real links"
            )
        return links, 1.0
    if endpoints is not None:
        if scale is not None and abs(scale - endpoints.time_scale) > 1e-9:
            raise LinkConfigError(
                f"--time-scale {scale:g} differs from the simulated room's "
                f"{endpoints.time_scale:g} ({endpoints.path}): both ends must share one clock rate"
            )
        scale = endpoints.time_scale
    return links, 1.0 if scale is None else scale


def _print_summary(console: Console, summary: dict[str, object]) -> None:
    table = Table(title=f"Exam {summary['state']}", show_lines=False)
    for col in ("step", "status", "planned", "actual", "lateness ms"):
        table.add_column(col)
    steps = summary["steps"]
    assert isinstance(steps, list)
    for s in steps:
        planned = s["planned_after_injection_s"]
        actual = s["actual_after_injection_s"]
        late = s["lateness_s"]
        table.add_row(
            s["id"],
            s["status"],
            "" if planned is None else f"T{planned:+g} s",
            "" if actual is None else f"T{actual:+.3f} s",
            "" if late is None else f"{1000 * late:+.1f}",
        )
    console.print(table)
    totals = summary["totals"]
    assert isinstance(totals, dict)
    console.print(
        f"{totals['images']} images, {totals['contrast_delivered_ml']} mL contrast, "
        f"reference air kerma {totals['reference_air_kerma_mgy']} mGy, "
        f"DAP {totals['dap_gy_cm2']} Gy·cm², "
        f"simulated {totals['exam_duration_s']:.0f} s in {totals['wall_time_s']:.1f} s wall"
    )
    if summary.get("reason"):
        console.print(f"reason: {summary['reason']}")


def with_faults(room: Room, faults: list[str]) -> Room:
    """Hand ``--fault`` specs to the in-process simulator (it parses and arms them).

    The specs are parsed here first, through the simulator's registered parser, so a bad one
    is refused before the exam folder is made or a device opened.
    """
    if not faults:
        return room
    from importlib.metadata import entry_points

    for ep in entry_points(group="fluoroctl.sim", name="parse_faults"):
        try:
            ep.load()(faults, links=False)
        except ValueError as exc:
            raise ConfigError("--fault", None, "", str(exc)) from None
    from .room import IN_PROCESS_SCHEMES

    wire = [r for r, link in room.links.items() if not link.startswith(IN_PROCESS_SCHEMES)]
    if wire:
        raise ConfigError(
            "--fault",
            None,
            "",
            f"fault injection on `run` needs the in-process simulator; {', '.join(wire)} "
            "are on wire links (pass --fault to `fluoroctl sim serve` instead)",
        )
    return room.model_copy(update={"options": {**room.options, "faults": ";".join(faults)}})


def _cmd_resume(args: argparse.Namespace) -> int:
    from .exam import ExamProgress
    from .progress import ProgressView
    from .recovery import RecoveryError
    from .resume import resume_exam, resume_loop

    console = Console(stderr=True)
    try:
        loop = resume_loop(args.dir)
    except RecoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    progress = ExamProgress("resumed exam")

    async def go() -> int:
        view = ProgressView(progress, Clock.for_running_loop(), console)
        with view:
            outcome = await resume_exam(
                args.dir, operator_mode=args.operator, progress=progress, on_event=view.on_event
            )
        _print_summary(console, outcome.summary)
        return exit_code_for(outcome.result)

    try:
        return _drive_exam(loop, go(), progress, console)
    except RecoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
