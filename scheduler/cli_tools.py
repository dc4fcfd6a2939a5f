"""`fluoroctl plan`, `validate`, `schema` and the simulator commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from drivers import new_event_loop
from drivers.config import ConfigError, find_file_loader, load_yaml, validate_data

from .exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_OK,
)
from .links import (
    Endpoints,
    LinkConfigError,
    write_endpoints,
)
from .paths import default_room_path
from .plan import rehearse
from .preflight import Finding, preflight, raise_on_errors, warnings_of
from .protocol import Protocol, load_protocol
from .room import Room, load_room
from .run_inputs import check_patient, check_room


class _BadRoom(Exception):
    """The room that protocols are validated against cannot be loaded."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


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

    plan = rehearse(
        protocol,
        room,
        patient=args.patient,
        base_dir=config_base_dir(room_path),
        weight_kg=getattr(args, "weight_kg", None),
    )
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
    say = lambda msg: console.print(msg, highlight=False)  # noqa: E731
    extra = {} if args.size is None else {"size_px": args.size}
    paths = render(scenario, args.out, progress=say, **extra)
    for path in paths:
        print(path)
    return EXIT_OK


def _cmd_sim_serve(args: argparse.Namespace) -> int:
    from importlib.metadata import entry_points

    from .compose import config_base_dir, room_file_options

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
    options = dict(room.options) | room_file_options(room, args.room)
    if args.patient:
        options["patient"] = args.patient
    console = Console(stderr=True)

    def ready(links: dict[str, str], broker: str | None) -> None:
        write_endpoints(Endpoints(endpoints_path, links, broker, time_scale=scale, pid=os.getpid()))
        for role, where in sorted(links.items()):
            console.print(f"{role:9} {where}", highlight=False)
        if broker:
            # The address only: the options are file paths, in the endpoints file for the run.
            console.print(f"{'broker':9} {broker.split('?', 1)[0]}", highlight=False)
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
            key_file=Path(room.key_file) if room.key_file else None,
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
