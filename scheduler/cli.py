"""The ``fluoroctl`` command: run, plan and validate."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from drivers import Clock, new_event_loop
from drivers.config import ConfigError, find_file_loader, load_yaml

from .paths import default_room_path
from .plan import make_plan
from .protocol import load_protocol
from .room import Room, load_room

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fluoroctl", description="Fluoroscopy room control and acquisition scheduling."
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an exam protocol")
    run.add_argument("protocol", type=Path)
    run.add_argument(
        "--room", type=Path, default=None, help="room file (default: the built-in simulator)"
    )
    run.add_argument(
        "--patient",
        default=None,
        help="simulated patient scenario: a name in configs/patients/ or a path",
    )
    run.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory (DICOM, events.jsonl, summary.json, contact sheet)",
    )
    run.add_argument(
        "--operator",
        choices=("terminal", "scripted"),
        default=None,
        help="who answers prompts (default: the room file's choice)",
    )
    run.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND@TIME",
        help="simulator fault injection, repeatable: e.g. injector.occlusion@T+20s (after the "
        "injection start), generator@300 (after the exam start); see docs/faults.md",
    )
    run.set_defaults(func=_cmd_run)

    resume = sub.add_parser(
        "resume", help="continue an exam whose process died, from its output directory"
    )
    resume.add_argument("dir", type=Path, help="the exam's output directory")
    resume.add_argument("--operator", choices=("terminal", "scripted"), default=None)
    resume.set_defaults(func=_cmd_resume)

    plan = sub.add_parser(
        "plan", help="dry run: timeline, duration, contrast, exposures and dose estimate"
    )
    plan.add_argument("protocol", type=Path)
    plan.add_argument("--room", type=Path, default=None)
    plan.set_defaults(func=_cmd_plan)

    sim = sub.add_parser("sim", help="simulator tools")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    render = sim_sub.add_parser(
        "render", help="render a labelled image series and compartment curves for a patient"
    )
    render.add_argument("--patient", default="normal", help="scenario name or path")
    render.add_argument("--out", type=Path, required=True)
    render.set_defaults(func=_cmd_sim_render)

    sch = sub.add_parser("schema", help="write the JSON Schemas of protocol and room files")
    sch.add_argument("--out", type=Path, default=Path("docs"))
    sch.set_defaults(func=_cmd_schema)

    val = sub.add_parser("validate", help="check protocol, room and patient files")
    val.add_argument("files", type=Path, nargs="+")
    val.set_defaults(func=_cmd_validate)
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    room_path = args.room or default_room_path()
    protocol = load_protocol(args.protocol)
    room = with_faults(load_room(room_path), args.fault)
    loop = new_event_loop("virtual" if room.clock == "virtual" else "real")
    console = Console(stderr=True)

    from .compose import run_exam
    from .engine import ExamProgress
    from .progress import ProgressView

    progress = ExamProgress(protocol.name)

    async def go() -> int:
        view = ProgressView(progress, Clock.for_running_loop(), console)
        with view:
            outcome = await run_exam(
                args.protocol,
                room_path,
                args.out,
                patient=args.patient,
                operator_mode=args.operator,
                progress=progress,
                on_event=view.on_event,
                protocol=protocol,
                room=room,
            )
        _print_summary(console, outcome.summary)
        return EXIT_OK if outcome.result.state == "completed" else EXIT_FAILED

    task = loop.create_task(go())
    # Ctrl-C cancels the exam task, whose cancellation path puts every device in its safe
    # state and closes the record, instead of unwinding out of the loop with devices live.
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        console.print("exam aborted by the operator (interrupt); devices were put in safe state")
        return 130
    finally:
        loop.close()


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


def _cmd_plan(args: argparse.Namespace) -> int:
    protocol = load_protocol(args.protocol)
    room = load_room(args.room or default_room_path())
    plan = make_plan(protocol, room)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # pipes and logs: keep table rows on one line
    table = Table(title=f"Plan: {protocol.name}")
    for col in (
        "#",
        "step",
        "type",
        "start",
        "after injection",
        "exposures",
        "entrance mGy",
        "note",
    ):
        table.add_column(col)
    for i, s in enumerate(plan.steps, 1):
        table.add_row(
            str(i),
            s.label,
            s.type,
            _clock(s.start_s),
            "" if s.after_injection_s is None else f"T+{_clock(s.after_injection_s)}",
            str(s.exposures or ""),
            f"{s.entrance_mgy:.2f}" if s.entrance_mgy else "",
            s.note,
        )
    console.print(table)
    console.print(
        f"duration ≈ {_clock(plan.duration_s)} (mm:ss), contrast {plan.contrast_ml:g} mL "
        f"({plan.iodine_g:g} g iodine), {plan.exposures} radiographic exposures, "
        f"fluoroscopy {plan.fluoro_s:.2f} s beam-on, "
        f"estimated entrance air kerma ≈ {plan.entrance_mgy:.1f} mGy",
        soft_wrap=True,
    )
    return EXIT_OK


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def _cmd_sim_render(args: argparse.Namespace) -> int:
    from importlib.metadata import entry_points

    found = list(entry_points(group="fluoroctl.sim", name="render"))
    if not found:
        print(
            "error: no simulator installed (the fluoroctl.sim entry point is missing)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    render = found[0].load()
    scenario = _scenario_path(args.patient)
    console = Console(stderr=True)
    paths = render(scenario, args.out, progress=lambda msg: console.print(msg, highlight=False))
    for path in paths:
        print(path)
    return EXIT_OK


def _scenario_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        return candidate
    return default_room_path().parent.parent / "patients" / f"{name_or_path}.yaml"


def _cmd_schema(args: argparse.Namespace) -> int:
    from .schema import export

    for path in export(args.out):
        print(path)
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            kind = _validate_one(path)
            print(f"{path}: ok ({kind})")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _validate_one(path: Path) -> str:
    data, _ = load_yaml(path)
    if isinstance(data, dict) and "protocol" in data:
        load_protocol(path)
        return "protocol"
    if isinstance(data, dict) and "room" in data:
        load_room(path)
        return "room"
    if isinstance(data, dict):
        for key in data:
            loader = find_file_loader(str(key))
            if loader is not None:
                loader(path)
                return str(key)
    raise ConfigError(
        path,
        1,
        "",
        "not a fluoroctl file: expected a top-level 'protocol:', 'room:' or 'patient:' key",
    )


def with_faults(room: Room, faults: list[str]) -> Room:
    """Hand ``--fault`` specs to the in-process simulator (it parses and arms them)."""
    if not faults:
        return room
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
    from .engine import ExamProgress
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
        return EXIT_OK if outcome.result.state == "completed" else EXIT_FAILED

    task = loop.create_task(go())
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return loop.run_until_complete(task)
    except RecoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except asyncio.CancelledError:
        console.print("exam aborted by the operator (interrupt); devices were put in safe state")
        return 130
    finally:
        loop.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
