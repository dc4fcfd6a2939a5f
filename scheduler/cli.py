"""The ``fluoroctl`` command: run, plan and validate."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from drivers.config import ConfigError
from drivers.wire.keys import KeyFileError

from .cli_calibrate import add_calibrate_parser
from .cli_console import add_console_parser
from .cli_dicom import add_dicom_parser
from .cli_keys import add_keys_parser
from .cli_orders import add_order_options, add_worklist_parser
from .cli_run import _cmd_resume, _cmd_run, run_links, with_faults
from .cli_tools import _cmd_plan, _cmd_schema, _cmd_sim_render, _cmd_sim_serve, _cmd_validate
from .exam_dir import ExamFolderError
from .exit_codes import (
    EXIT_BAD_INPUT,
)
from .links import (
    LinkConfigError,
)
from .paths import protocol_path, room_path

if TYPE_CHECKING:
    pass


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
    except (ConfigError, LinkConfigError, ExamFolderError, KeyFileError) as exc:
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
        nargs="?",
        default=None,
        help="protocol file, or the name of a shipped one (e.g. ivu-standard); with --order, "
        "the room's procedures: entry for the order's procedure code",
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
        choices=("terminal", "scripted", "console"),
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
    add_order_options(run)
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
    resume.add_argument("--operator", choices=("terminal", "scripted", "console"), default=None)
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
    plan.add_argument(
        "--weight-kg",
        type=float,
        default=None,
        help="the patient's weight for a weight-based contrast volume (default: the "
        "simulated patient's)",
    )
    plan.set_defaults(func=_cmd_plan)

    sim = sub.add_parser("sim", help="simulator tools")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    render = sim_sub.add_parser(
        "render", help="render a labelled image series and compartment curves for a patient"
    )
    render.add_argument("--patient", default="normal", help="scenario name or path")
    render.add_argument("--out", type=Path, required=True)
    render.add_argument(
        "--size",
        type=int,
        default=None,
        help="panel pixels a side (default: the room's 1024); small sizes render fast",
    )
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

    add_keys_parser(sub)
    add_calibrate_parser(sub)
    add_dicom_parser(sub)
    add_worklist_parser(sub)
    add_console_parser(sub)
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


__all__ = ["main", "run_links", "with_faults"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
