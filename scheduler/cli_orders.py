"""``fluoroctl worklist`` and the order options of ``fluoroctl run`` (docs/dicom.md).

``run --order ACCESSION`` asks the room's worklist for that accession number and runs the
protocol the room's ``procedures:`` map gives for the requested procedure code; ``run
--order`` without a value (or ``--pick``) lists today's procedures at a terminal and lets the
technologist choose. ``--order-file FILE`` and the identity flags give an order without a
worklist. Every refusal is one line and exit 2, before anything is created or opened.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.config import ConfigError, line_of, load_yaml

from .exit_codes import EXIT_BAD_INPUT, EXIT_OK
from .hospital.worklist import WorklistError, peer_name, query, worklist_peer
from .order_table import order_table, pick_at_terminal
from .orders import (
    IDENTITY_FLAGS,
    Order,
    OrderSource,
    load_order,
    order_from_flags,
    order_with_weight,
    unidentified_order,
)
from .paths import default_room_path, protocol_path, room_path
from .protocol import Protocol
from .room import IN_PROCESS_SCHEMES, Room, load_room
from .weight_dose import missing_weight, needs_weight

#: ``--order`` given without an accession number: pick from today's worklist
PICK = "\0pick"


def add_order_options(parser: argparse.ArgumentParser) -> None:
    """``run``'s order options: a worklist order, an order file, or an identity by flags."""
    group = parser.add_argument_group(
        "exam order (who the exam is for; docs/dicom.md)",
        "One of --order/--pick, --order-file or --patient-id/--patient-name. Without one, a "
        "simulator room uses its simulated patient; a room on real links marks the exam "
        "UNIDENTIFIED, and a room with a worklist refuses unless --unidentified.",
    )
    group.add_argument(
        "--order",
        nargs="?",
        const=PICK,
        default=None,
        metavar="ACCESSION",
        help="the worklist order to run (the room's dicom.worklist); the protocol is the "
        "room's procedures: entry for its requested procedure code. Without a value: pick "
        "from today's list",
    )
    group.add_argument(
        "--pick", action="store_true", help="pick the order from today's worklist (terminal)"
    )
    group.add_argument(
        "--order-file", type=Path, default=None, metavar="FILE", help="an order: YAML file"
    )
    group.add_argument("--patient-id", default=None, metavar="ID")
    group.add_argument("--patient-name", default=None, metavar="FAMILY^GIVEN")
    group.add_argument("--birth-date", default=None, metavar="YYYY-MM-DD")
    group.add_argument("--sex", default=None, choices=("M", "F", "O"))
    group.add_argument(
        "--weight-kg",
        type=float,
        default=None,
        metavar="KG",
        help="the patient's weight (for weight-based contrast); with --order or --order-file "
        "it replaces the order's",
    )
    group.add_argument(
        "--accession",
        default=None,
        metavar="NUMBER",
        help="accession number (default: made up locally, FX<start time>)",
    )
    group.add_argument(
        "--unidentified",
        action="store_true",
        help="run without an order on purpose: a temporary identity UNIDENTIFIED-<time>, to "
        "be reconciled in the PACS",
    )


#: the attributes add_order_options gives the parsed arguments
ORDER_DESTS = ("order", "pick", "order_file", "weight_kg", "unidentified")


@dataclass(frozen=True)
class RunOrder:
    """What the order options resolve to, before anything is created or opened."""

    order: Order | None
    source: OrderSource | None
    #: the protocol the room maps the order's procedure code to (worklist orders)
    protocol_path: Path | None = None
    #: a line for the operator before the run (an exam marked UNIDENTIFIED)
    warning: str | None = None


def resolve_run_order(
    args: argparse.Namespace,
    room: Room,
    room_file: Path,
    *,
    ask: Callable[[list[Order]], Order] | None = None,
) -> RunOrder:
    """The order ``run`` was given, checked: a :class:`ConfigError` (one line, exit 2) for
    conflicting options, a bad order file or flag, an accession not on the worklist, an
    unmapped procedure code, or an unreachable worklist."""
    # a parser without the order options (a caller of _cmd_run's own) means: no order given
    opts = argparse.Namespace(**{name: getattr(args, name, None) for name in ORDER_DESTS})
    pick = bool(opts.pick) or opts.order == PICK
    identity = {
        f: getattr(args, flag[2:].replace("-", "_"), None)
        for f, flag in IDENTITY_FLAGS.items()
        if f != "weight_kg"
    }
    flags = [IDENTITY_FLAGS[f] for f, v in identity.items() if v is not None]
    chosen = [
        name
        for name, given in (
            ("--order", opts.order is not None or pick),
            ("--order-file", opts.order_file is not None),
            (flags[0] if flags else "", bool(flags)),
            ("--unidentified", opts.unidentified),
        )
        if given
    ]
    if len(chosen) > 1:
        raise ConfigError(chosen[1], None, "", f"give one of {' and '.join(chosen)}, not both")
    weight = opts.weight_kg
    if weight is not None and not 0 < weight <= 500:
        raise ConfigError("--weight-kg", None, "", f"{weight:g}: a weight in kg, 0 < KG ≤ 500")
    if opts.order is not None or pick:
        order = _worklist_order(room, room_file, None if pick else opts.order, ask)
        return RunOrder(
            order_with_weight(order, weight), "worklist", _mapped_protocol(order, room, room_file)
        )
    if opts.order_file is not None:
        return RunOrder(order_with_weight(load_order(opts.order_file), weight), "order-file")
    if flags:
        return RunOrder(order_from_flags({**identity, "weight_kg": weight}), "command-line")
    if opts.unidentified or not simulates_patient(room):
        if not opts.unidentified and room.dicom.worklist is not None:
            raise ConfigError(
                room_file,
                None,
                "",
                f"room {room.name!r} takes its patients from the worklist: give --order "
                "ACCESSION (or --pick), --order-file FILE or --patient-id/--patient-name; "
                "--unidentified runs under a temporary identity",
            )
        temporary = unidentified_order(room.station_name, dt.datetime.now(dt.UTC))
        return RunOrder(
            order_with_weight(temporary, weight),
            "unidentified",
            warning=f"no order: the exam is marked {temporary.patient_id} "
            f"({temporary.patient_name}); reconcile it with the patient's record in the PACS",
        )
    if weight is not None:
        raise ConfigError(
            "--weight-kg",
            None,
            "",
            "goes with an order (--order, --order-file or --patient-id/--patient-name); "
            "a simulator room's patient weighs what its scenario says",
        )
    return RunOrder(None, None)


def order_and_protocol(
    args: argparse.Namespace, room: Room, room_file: Path
) -> tuple[RunOrder, Path]:
    """``run``'s order (:func:`resolve_run_order`) and the protocol file to run: the one given
    on the command line, else the one the room maps the worklist order's procedure to."""
    ordered = resolve_run_order(args, room, room_file)
    chosen = args.protocol or ordered.protocol_path
    if chosen is None:
        raise ConfigError(
            "protocol",
            None,
            "",
            "give a protocol (a file or a shipped name such as ivu-standard), or --order "
            "ACCESSION to run the one the room maps the requested procedure to",
        )
    return ordered, Path(chosen)


def check_order_weight(
    ordered: RunOrder, protocol: Protocol, protocol_file: Path, room: Room
) -> None:
    """Refuse a weight-based protocol for a patient of unknown weight, before anything runs
    (a simulator room's patient always has one)."""
    if not needs_weight(protocol):
        return
    if ordered.order is not None and ordered.order.weight_kg is not None:
        return
    if ordered.order is None and simulates_patient(room):
        return
    raise missing_weight(
        protocol,
        protocol_file,
        "give --weight-kg KG, or an order with the patient's weight",
    )


def simulates_patient(room: Room) -> bool:
    """The room simulates its patient (an in-process device): the scenario is its identity."""
    return any(link.split(":", 1)[0] in IN_PROCESS_SCHEMES for link in room.links.values())


def _worklist_order(
    room: Room,
    room_file: Path,
    accession: str | None,
    ask: Callable[[list[Order]], Order] | None,
) -> Order:
    try:
        peer = worklist_peer(room.dicom, str(room_file))
        if accession is not None:
            found = query(room.dicom, peer, accession=accession)
        else:
            found = query(room.dicom, peer, date=dt.date.today())
    except WorklistError as exc:
        raise ConfigError("--order", None, "", str(exc)) from None
    if accession is not None:
        if not found:
            raise ConfigError(
                "--order",
                None,
                "",
                f"accession {accession!r} is not on the {peer_name(peer)} "
                "(no scheduled RF procedure step with it)",
            )
        mine = [o for o in found if o.scheduled_station_ae == room.dicom.ae_title]
        return (mine or found)[0]
    if not found:
        raise ConfigError(
            "--order", None, "", f"no RF procedure scheduled today on the {peer_name(peer)}"
        )
    return (ask or pick_at_terminal)(found)


def _mapped_protocol(order: Order, room: Room, room_file: Path) -> Path:
    code = order.procedure_code
    if code is None or code not in room.procedures:
        known = ", ".join(sorted(room.procedures)) or "none"
        what = order.requested_procedure_description or "no description"
        raise ConfigError(
            room_file,
            _procedures_line(room_file),
            "room.procedures",
            f"no protocol for requested procedure code {code!r} of accession "
            f"{order.accession_number!r} ({what}); mapped codes: {known}",
        )
    target = protocol_path(room.procedures[code])
    if not target.is_absolute() and not target.exists():
        beside = room_file.parent / target
        if beside.exists():
            return beside
    return target


def _procedures_line(room_file: Path) -> int | None:
    try:
        _data, node = load_yaml(room_file)
    except ConfigError:
        return None
    return line_of(node, ("room", "procedures"))[0]


# -- fluoroctl worklist ------------------------------------------------------------------------
def add_worklist_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wl = sub.add_parser(
        "worklist",
        help="list the procedures scheduled on the room's worklist (C-FIND, Modality "
        "Worklist): patient, accession, requested procedure, station, referring physician",
    )
    wl.add_argument(
        "--room",
        type=room_path,
        default=None,
        help="room file or shipped room name (its dicom.worklist is asked)",
    )
    wl.add_argument(
        "--date",
        type=_date_arg,
        default=None,
        metavar="YYYY-MM-DD",
        help="scheduled date (default: today)",
    )
    wl.add_argument(
        "--station",
        nargs="?",
        const="",
        default=None,
        metavar="AE",
        help="only steps scheduled on this station AE (without a value: the room's own "
        "dicom.ae_title)",
    )
    wl.add_argument("--json", action="store_true", help="print the orders as JSON on stdout")
    wl.set_defaults(func=_cmd_worklist)


def _date_arg(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _cmd_worklist(args: argparse.Namespace) -> int:
    room_file = args.room or default_room_path()
    room = load_room(room_file)
    day = args.date or dt.date.today()
    station = None if args.station is None else (args.station or room.dicom.ae_title)
    try:
        peer = worklist_peer(room.dicom, str(room_file))
        orders = query(room.dicom, peer, date=day, station_ae=station)
    except WorklistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps([o.model_dump(mode="json") for o in orders], indent=2))
        return EXIT_OK
    if not orders:
        print(f"no RF procedure scheduled on {day.isoformat()} ({peer_name(peer)})")
        return EXIT_OK
    print(order_table(orders))
    return EXIT_OK


__all__ = [
    "PICK",
    "RunOrder",
    "add_order_options",
    "add_worklist_parser",
    "check_order_weight",
    "order_and_protocol",
    "resolve_run_order",
    "simulates_patient",
]
