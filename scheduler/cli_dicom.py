"""``fluoroctl dicom status|flush [DIR]``: an exam folder's DICOM outbox (docs/dicom.md).

``status`` shows, per object and destination, where it is (written, queued, sent,
committed), the last error and the next try; it changes nothing. ``flush`` queues every
DICOM file of the folder not queued yet and delivers what is queued, waiting at most
``--timeout`` seconds: exit 0 when everything is delivered (committed where the destination
commits, MPPS messages accepted), 1 with a one-line reason when not, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from .hospital.lock import SenderLock
from .hospital.objects import folder_files
from .hospital.outbox import Outbox, OutboxError
from .hospital.outbox_db import FILE_NAME, Target
from .hospital.report import dicom_section, iso
from .hospital.settings import OutboxSettings
from .paths import room_path

DEFAULT_TIMEOUT_S = 60.0


def add_dicom_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dicom = sub.add_parser("dicom", help="an exam's DICOM outbox: what reached PACS, send the rest")
    dicom_sub = dicom.add_subparsers(dest="dicom_command", required=True)
    status = dicom_sub.add_parser(
        "status", help="per object and destination: written, sent, committed, last error"
    )
    status.add_argument("dir", type=Path, nargs="?", default=Path("."), help="exam folder")
    status.add_argument("--json", action="store_true", help="as summary.json's dicom section")
    status.set_defaults(func=_cmd_status)
    flush = dicom_sub.add_parser(
        "flush", help="deliver what is queued; exit 0 when all is delivered"
    )
    flush.add_argument("dir", type=Path, nargs="?", default=Path("."), help="exam folder")
    flush.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"give up after S seconds (default {DEFAULT_TIMEOUT_S:g})",
    )
    flush.add_argument(
        "--room",
        type=room_path,
        default=None,
        help="also send to this room file's dicom destinations (for an exam run without them)",
    )
    flush.set_defaults(func=_cmd_flush)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _exam_folder(folder: Path) -> str | None:
    """Why ``folder`` is not an exam folder (None: it is one)."""
    if not folder.is_dir():
        return f"{folder}: no such exam folder"
    if not (folder / "events.jsonl").exists() and not (folder / FILE_NAME).exists():
        return f"{folder}: not an exam folder (no events.jsonl)"
    return None


# -- status -----------------------------------------------------------------------------------
def _cmd_status(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    problem = _exam_folder(folder)
    if problem:
        return _fail(problem)
    files = [p.name for p in folder_files(folder)]
    if not (folder / FILE_NAME).exists():
        print(f"{folder}: {len(files)} DICOM file(s), no outbox: the exam's room has no dicom")
        print(f"destinations (send it with: fluoroctl dicom flush {folder} --room ROOM)")
        return EXIT_OK
    try:
        outbox = Outbox.in_folder(folder, create=False)
    except OutboxError as exc:
        return _fail(str(exc))
    try:
        if args.json:
            print(json.dumps(dicom_section(outbox), indent=2))
            return EXIT_OK
        _print_status(folder, outbox, files)
    finally:
        outbox.close()
    return EXIT_OK


def _print_status(folder: Path, outbox: Outbox, files: list[str]) -> None:
    rows = outbox.rows()
    queued_files = set(outbox.files())
    head = ("file", "destination", "state", "sent", "committed", "tries", "last error / next try")
    table: list[tuple[str, ...]] = [head]
    for r in rows:
        note = r.last_error or ""
        if r.next_try and r.state == "queued" and r.last_error:
            note = f"{note} (next try {_clock(r.next_try)})".strip()
        table.append(
            (
                r.file,
                r.destination,
                r.state,
                _clock(r.sent_at),
                _clock(r.committed_at),
                str(r.attempts),
                note,
            )
        )
    for name in files:
        if name not in queued_files:
            table.append((name, "-", "written", "", "", "0", "not queued yet (flush queues it)"))
    for m in outbox.message_rows():
        note = m.note or m.last_error or ""
        table.append((f"MPPS {m.kind}", m.destination, m.state, "", "", str(m.attempts), note))
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    for row in table:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())
    counts = {s: sum(1 for r in rows if r.state == s) for s in ("queued", "sent", "committed")}
    print(
        f"{len(queued_files)} object(s) queued to {len(outbox.targets('store'))} destination(s): "
        f"{counts['committed']} committed, {counts['sent']} sent, {counts['queued']} queued; "
        f"{outbox.undelivered()} undelivered"
    )


def _clock(epoch: float | None) -> str:
    text = iso(epoch)
    return "" if text is None else text[11:19]


# -- flush ------------------------------------------------------------------------------------
def _cmd_flush(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    problem = _exam_folder(folder)
    if problem:
        return _fail(problem)
    if not (args.timeout >= 0):
        return _fail(f"--timeout must be zero or more seconds, got {args.timeout:g}")
    if args.room is None and not (folder / FILE_NAME).exists():
        return _fail(
            f"{folder}: no DICOM outbox: the exam's room has no dicom destinations "
            "(name some with --room ROOM)"
        )
    lock = SenderLock(folder)
    if not lock.acquire():
        return _fail(
            f"{folder}: process {lock.holder()} is sending this exam (its run or another "
            "flush); wait for it to end",
            EXIT_FAILED,
        )
    try:
        return _flush_locked(folder, args.timeout, args.room)
    finally:
        lock.release()


def _flush_locked(folder: Path, timeout_s: float, room_file: Path | None) -> int:
    from .hospital.queueing import enqueue_folder, settings_of
    from .hospital.sender import Sender

    try:
        outbox = Outbox.in_folder(folder)
    except OutboxError as exc:
        return _fail(str(exc))
    try:
        if room_file is not None:
            from .room import load_room

            dicom = load_room(room_file).dicom
            if not dicom.destinations:
                return _fail(f"{room_file}: the room has no dicom destinations")
            outbox.add_destinations(dicom.destinations)
            outbox.set_meta(
                calling_ae=dicom.ae_title, settings=settings_of(dicom).model_dump_json()
            )
        study = outbox.meta("study_uid") or _journal_study(folder)
        if study is not None:
            outbox.set_meta(study_uid=study)
        enqueue_folder(outbox, folder, study_uid=study)
        settings_text = outbox.meta("settings")
        settings = (
            OutboxSettings.model_validate_json(settings_text) if settings_text else OutboxSettings()
        )
        calling = outbox.meta("calling_ae") or "FLUOROCTL"
        sender = Sender(folder, settings, calling)
        left = sender.drain(timeout_s)
        if left == 0:
            objects = len(outbox.files())
            print(f"{folder}: all {objects} object(s) delivered")
            return EXIT_OK
        return _fail(
            f"{folder}: {left} deliveries not done after {timeout_s:g} s: "
            + _why(outbox.targets(), outbox),
            EXIT_FAILED,
        )
    finally:
        outbox.close()


def _journal_study(folder: Path) -> str | None:
    """The exam's Study Instance UID from its journal's first line (None: none there)."""
    try:
        with (folder / "events.jsonl").open(encoding="utf-8") as f:
            first = json.loads(f.readline() or "{}")
    except (OSError, ValueError):
        return None
    study = first.get("data", {}).get("study_uid") if first.get("kind") == "exam_started" else None
    return study if isinstance(study, str) else None


def _why(targets: list[Target], outbox: Outbox) -> str:
    """The first reason per destination still owed something (one line)."""
    owed = {r.destination: r for r in outbox.rows() if r.state != "committed"}
    reasons = []
    for t in targets:
        if t.last_error:
            reasons.append(f"{t.name}: {t.last_error}")
        elif t.name in owed:
            row = owed[t.name]
            if row.state == "sent" and t.commitment:
                reasons.append(f"{t.name}: no storage commitment report yet")
            elif row.state == "queued":
                reasons.append(f"{t.name}: {row.last_error or 'not sent yet'}")
    for m in outbox.message_rows():
        if m.state == "queued":
            reasons.append(f"{m.destination}: MPPS {m.kind} {m.last_error or 'not sent yet'}")
            break
    return "; ".join(reasons) or "still in progress"


def main(argv: list[str] | None = None) -> int:
    """``fluoroctl dicom ...`` on its own (``python -m scheduler.cli_dicom dicom flush DIR``):
    the same parser and error handling as ``fluoroctl`` gives it."""
    from drivers.config import ConfigError

    parser = argparse.ArgumentParser(prog="fluoroctl")
    add_dicom_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(" ".join(str(exc).split()))


if __name__ == "__main__":
    sys.exit(main())
