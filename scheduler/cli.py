"""The ``fluoroctl`` command: run, plan and validate."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table

from drivers import Clock, DeviceError, new_event_loop
from drivers.config import ConfigError, find_file_loader, load_yaml, validate_data

from .exam_dir import ExamFolderError
from .exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    exit_code_for,
)
from .links import (
    Endpoints,
    LinkConfigError,
    placeholders,
    resolve_links,
    wait_for_endpoints,
    write_endpoints,
)
from .paths import default_room_path, protocol_path, room_path
from .plan import rehearse
from .preflight import (
    Finding,
    check_patient,
    check_room,
    check_run_inputs,
    preflight,
    raise_on_errors,
    warnings_of,
)
from .protocol import Protocol, load_protocol
from .room import Room, load_room

if TYPE_CHECKING:
    from .exam import ExamProgress


log = logging.getLogger("scheduler.cli")  # not __name__: "__main__" under python -m

#: the packages whose loggers ``-v``/``-q`` turn up and down (others stay at WARNING)
LOGGED_PACKAGES = ("drivers", "scheduler", "hardware_sim", "fluoroctl")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    log.info("fluoroctl %s: %s", installed_version(), args.command)
    log.debug("arguments: %s", {k: v for k, v in vars(args).items() if k != "func"})
    try:
        return int(args.func(args))
    except (ConfigError, LinkConfigError, ExamFolderError) as exc:
        # Bad input is one line (file:line: field: cause) and exit 2, never a traceback;
        # anything else is a bug and keeps its traceback.
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def installed_version() -> str:
    """The installed distribution's version (``0+unknown`` in a checkout never installed)."""
    try:
        return version("fluoroctl")
    except PackageNotFoundError:
        return "0+unknown"


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record comes (as logging's last resort
    does): main() may run many times in one process, each time with other streams."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class _LogFormatter(logging.Formatter):
    """``warning: drivers.wire.client: ...``: lower-case levels, like the CLI's ``error:``."""

    def format(self, record: logging.LogRecord) -> str:
        record.level = record.levelname.lower()
        return super().format(record)


_handler: logging.Handler | None = None


def configure_logging(verbosity: int) -> None:
    """One handler on stderr with one format; fluoroctl's own loggers at WARNING (0), INFO
    (1, ``-v``), DEBUG (2, ``-vv``) or ERROR (-1, ``-q``). Other libraries stay at WARNING
    (ERROR with ``-q``). Calling it again replaces the previous set-up."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler()
    _handler.setFormatter(_LogFormatter("%(level)s: %(name)s: %(message)s"))
    root.addHandler(_handler)
    root.setLevel(logging.ERROR if verbosity < 0 else logging.WARNING)
    level = {-1: logging.ERROR, 0: logging.NOTSET, 1: logging.INFO}.get(
        max(verbosity, -1), logging.DEBUG
    )
    for name in LOGGED_PACKAGES:
        logging.getLogger(name).setLevel(level)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fluoroctl", description="Fluoroscopy room control and acquisition scheduling."
    )
    p.add_argument("--version", action="version", version=f"fluoroctl {installed_version()}")
    loudness = p.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v informational messages, -vv debugging (before the command)",
    )
    loudness.add_argument(
        "-q", "--quiet", action="count", default=0, help="log errors only (before the command)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an exam protocol")
    run.add_argument(
        "protocol",
        type=protocol_path,
        help="protocol file, or the name of a shipped one (e.g. ivu-standard)",
    )
    run.add_argument(
        "--room",
        type=room_path,
        default=None,
        help="room file or shipped room name (default: the built-in simulator)",
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
        "--force-new",
        action="store_true",
        help="when --out already holds an exam, move it aside (renamed DIR.old-<time>, never "
        "deleted) and start a new one there; without it such a folder is refused",
    )
    _add_link_options(run)
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
        "plan",
        help="rehearse the exam on the simulator in virtual time (seconds; nothing is kept): "
        "timeline, duration, contrast, exposures and dose",
    )
    plan.add_argument(
        "protocol",
        type=protocol_path,
        help="protocol file, or the name of a shipped one (e.g. ivu-standard)",
    )
    plan.add_argument(
        "--room",
        type=room_path,
        default=None,
        help="room file or shipped room name (default: the built-in simulator)",
    )
    plan.add_argument(
        "--patient",
        default=None,
        help="simulated patient scenario to rehearse with (default: the room's, else normal)",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON on stdout")
    plan.set_defaults(func=_cmd_plan)

    sim = sub.add_parser("sim", help="simulator tools")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    render = sim_sub.add_parser(
        "render", help="render a labelled image series and compartment curves for a patient"
    )
    render.add_argument("--patient", default="normal", help="scenario name or path")
    render.add_argument("--out", type=Path, required=True)
    render.set_defaults(func=_cmd_sim_render)
    serve = sim_sub.add_parser(
        "serve",
        help="run a simulated room in this process and expose its devices over real links "
        "(ptys, a pyusb backend, MQTT, TCP) until interrupted",
    )
    serve.add_argument(
        "--room",
        type=room_path,
        required=True,
        help="room file with wire links, or a shipped room's name (e.g. sim-links)",
    )
    serve.add_argument("--patient", default=None, help="scenario name or path")
    serve.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where ptys' symlinks live (default: beside the endpoints file)",
    )
    _add_link_options(serve)
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND@TIME",
        help="fault injection, repeatable: device faults as for `run`, plus link faults "
        "(carm.link_close, table.garbage, detector.usb_fail, broker.restart, ...); "
        "see docs/faults.md",
    )
    serve.set_defaults(func=_cmd_sim_serve)

    sch = sub.add_parser(
        "schema", help="write the JSON Schemas of protocol, room and patient files"
    )
    sch.add_argument("--out", type=Path, default=Path("docs"))
    sch.set_defaults(func=_cmd_schema)

    val = sub.add_parser(
        "validate",
        help="check protocol, room and patient files (protocols also against a room: "
        "injector limits, device ranges, dose limits, timeline)",
    )
    val.add_argument("files", type=Path, nargs="+")
    val.add_argument(
        "--room",
        type=Path,
        default=None,
        help="room to check protocols against (default: the built-in simulator)",
    )
    val.set_defaults(func=_cmd_validate)
    return p


def _add_link_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--time-scale",
        type=float,
        default=None,
        metavar="N",
        help="run time N times faster than the wall clock (rehearsal over real links); "
        "`run` adopts sim serve's scale when not given",
    )
    p.add_argument(
        "--broker", default=None, metavar="URL", help="MQTT broker, e.g. mqtt://127.0.0.1:1883"
    )
    p.add_argument(
        "--endpoints",
        type=Path,
        default=None,
        metavar="FILE",
        help="sim serve's endpoints file (default: the room file's endpoints_file)",
    )


def _cmd_run(args: argparse.Namespace) -> int:
    room_path = args.room or default_room_path()
    protocol = load_protocol(args.protocol)
    room = with_faults(load_room(room_path), args.fault)
    # Everything checkable is checked before anything is created or opened.
    check_run_inputs(
        args.protocol,
        protocol,
        room_path,
        room,
        patient=args.patient,
        out_dir=args.out,
        warn=_warn,
    )
    links, time_scale = run_links(room, args)
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
                args.protocol,
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
        console.print(f"error: cannot open the room's devices: {exc}", highlight=False)
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


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def _cmd_plan(args: argparse.Namespace) -> int:
    protocol = load_protocol(args.protocol)
    room_path = args.room or default_room_path()
    room = load_room(room_path)
    findings = preflight(protocol, room)
    raise_on_errors(findings, args.protocol)
    check_patient(args.patient, room, room_path)
    for line in warnings_of(findings, args.protocol):
        _warn(line)
    from .compose import config_base_dir

    plan = rehearse(protocol, room, patient=args.patient, base_dir=config_base_dir(room_path))
    # what the engine itself did in the rehearsal: the authoritative word on each step
    rehearsed = [
        Finding(
            "warning", f"protocol.steps[{i}]", f"rehearsed on the simulator: {s.status}: {s.detail}"
        )
        for i, s in enumerate(plan.steps)
        if s in plan.problems
    ]
    for line in warnings_of(rehearsed, args.protocol):
        _warn(line)
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return EXIT_OK
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
        note = s.note if s.status == "done" else f"{s.status.upper()}: {s.detail}"
        table.add_row(
            str(i),
            s.label,
            s.type,
            "" if s.start_s is None else _clock(s.start_s),
            "" if s.after_injection_s is None else f"T{_signed_clock(s.after_injection_s)}",
            str(s.exposures or ""),
            f"{s.entrance_mgy:.2f}" if s.entrance_mgy else "",
            note,
        )
    console.print(table)
    ended = "" if plan.state == "completed" else f"; the rehearsal {plan.state}: {plan.reason}"
    console.print(
        f"duration {_clock(plan.duration_s)} (mm:ss), contrast {plan.contrast_ml:g} mL "
        f"({plan.iodine_g:g} g iodine), {plan.exposures} radiographic exposures, "
        f"fluoroscopy {plan.fluoro_s:.2f} s beam-on, "
        f"estimated entrance air kerma ≈ {plan.entrance_mgy:.1f} mGy, "
        f"simulated reference air kerma {plan.reference_air_kerma_mgy:.1f} mGy{ended}",
        soft_wrap=True,
    )
    return EXIT_OK


def _signed_clock(seconds: float) -> str:
    return ("-" if seconds < 0 else "+") + _clock(abs(seconds))


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


def _cmd_sim_serve(args: argparse.Namespace) -> int:
    from importlib.metadata import entry_points

    from .compose import config_base_dir

    room = load_room(args.room)
    if room.clock == "virtual":
        raise LinkConfigError(
            f"{args.room}: room {room.name!r} is simulated in-process on virtual time; "
            "sim serve is for rooms whose devices are on real links (e.g. "
            "configs/rooms/sim-links.yaml)"
        )
    found = list(entry_points(group="fluoroctl.sim", name="serve"))
    if not found:
        print("error: no simulator installed (fluoroctl.sim serve entry point)", file=sys.stderr)
        return EXIT_BAD_INPUT
    serve = found[0].load()
    endpoints_path = args.endpoints or Path(room.endpoints_file or "run/sim-serve/endpoints.json")
    run_dir = args.run_dir or endpoints_path.parent
    scale = 1.0 if args.time_scale is None else args.time_scale
    if not (math.isfinite(scale) and scale > 0):
        raise LinkConfigError(f"--time-scale must be positive, got {scale:g}")
    options = dict(room.options)
    if args.patient:
        options["patient"] = args.patient
    console = Console(stderr=True)

    def ready(links: dict[str, str], broker: str | None) -> None:
        write_endpoints(Endpoints(endpoints_path, links, broker, time_scale=scale, pid=os.getpid()))
        for role, where in sorted(links.items()):
            console.print(f"{role:9} {where}", highlight=False)
        if broker:
            console.print(f"{'broker':9} {broker}", highlight=False)
        console.print(f"endpoints written to {endpoints_path}; Ctrl-C stops", highlight=False)

    loop = new_event_loop("scaled" if scale != 1.0 else "real", time_scale=scale)
    task = loop.create_task(
        serve(
            links=room.links,
            options=options,
            base_dir=config_base_dir(args.room),
            run_dir=run_dir,
            broker=args.broker or room.broker,
            faults=list(getattr(args, "fault", None) or []),
            on_ready=ready,
            log=lambda msg: console.print(msg, highlight=False),
        )
    )
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        console.print("simulated room stopped", highlight=False)
    except ValueError as exc:  # a bad --fault or a link the simulator cannot serve
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        endpoints_path.unlink(missing_ok=True)  # a stale file would point a run at nothing
        loop.close()
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


class _BadRoom(Exception):
    """The room that protocols are validated against cannot be loaded."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    rooms: list[Room] = []

    def room() -> Room:
        """The room protocols are checked against, loaded once and only if needed."""
        if not rooms:
            try:
                rooms.append(load_room(args.room or default_room_path()))
            except ConfigError as exc:
                raise _BadRoom(exc) from None
        return rooms[0]

    for path in args.files:
        try:
            kind, warnings = _validate_one(path, room)
        except _BadRoom as bad:
            raise bad.error from None  # the --room file itself: one line, whatever was listed
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        for line in warnings:
            _warn(line)
        print(f"{path}: ok ({kind})")
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _validate_one(path: Path, room: Callable[[], Room]) -> tuple[str, list[str]]:
    """The file's kind and its warnings; ConfigError for the first error. Protocols are
    also checked against ``room()`` (preflight), rooms for links their backends can serve."""
    data, node = load_yaml(path)
    if isinstance(data, dict) and "protocol" in data:
        protocol = validate_data(path, data, node, Protocol, "protocol")
        findings = preflight(protocol, room())
        raise_on_errors(findings, path)
        return "protocol", warnings_of(findings, path)
    if isinstance(data, dict) and "room" in data:
        checked = validate_data(path, data, node, Room, "room")
        raise_on_errors(check_room(checked), path)
        check_patient(None, checked, path)  # the simulator room's patient scenario
        return "room", []
    if isinstance(data, dict):
        for key in data:
            loader = find_file_loader(str(key))
            if loader is not None:
                loader(path)
                return str(key), []
    raise ConfigError(
        path,
        1 if data is not None else None,
        "",
        "not a fluoroctl file: expected a top-level 'protocol:', 'room:' or 'patient:' key",
    )


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
