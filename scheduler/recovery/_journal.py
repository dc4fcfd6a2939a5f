"""Reading the journal line by line: every line checked, a torn tail kept aside before it is cut."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

from pydantic import ValidationError

from ..journal import ExamEvent
from ._records import (
    _CLOCK_TOLERANCE_S,
    _FIRE_ONCE,
    _UNCHANGED,
    TORN_SUFFIX,
    JournalScan,
    RecoveryError,
    TornTail,
)


def read_journal(path: Path) -> list[ExamEvent]:
    """Every record of the journal at ``path``, checked (see :func:`scan_journal`)."""
    return scan_journal(path).events


def scan_journal(path: Path) -> JournalScan:
    """Read and check every line of the journal; :class:`RecoveryError` on any damage.

    Changes nothing. Only bytes after the last newline may be incomplete (a torn write):
    reported in :attr:`JournalScan.torn`, or, if they are a complete record lacking only
    its newline, kept as a record (:attr:`JournalScan.unterminated`).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecoveryError(f"{path}: no journal (is this an exam folder?)") from None
    except OSError as exc:
        raise RecoveryError(f"{path}: cannot read the journal: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    last = lines.pop()  # after the final newline: b"" when the journal ends cleanly
    checker = _LineChecker(path)
    events = [checker.check(i, raw) for i, raw in enumerate(lines, 1)]
    good = len(data) - len(last)
    unterminated = False
    torn: TornTail | None = None
    if last:
        line_no = len(lines) + 1
        record = _parse(last)
        if record is not None:
            events.append(checker.check(line_no, last))
            good, unterminated = len(data), True
        else:
            torn = TornTail(line_no, good, len(last))
    if not events:
        raise RecoveryError(f"{path}: the journal holds no complete record; {_UNCHANGED}")
    return JournalScan(path, events, len(data), good, unterminated, torn)


def _parse(raw: bytes) -> ExamEvent | None:
    try:
        return ExamEvent.model_validate_json(raw)
    except ValueError:
        return None


class _LineChecker:
    """Checks that each line is the next record of this one exam."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: frozenset[str] = frozenset()
        self.wall0: dt.datetime | None = None

    def fail(self, line: int, reason: str) -> RecoveryError:
        return RecoveryError(f"{self.path}:{line}: {reason}; {_UNCHANGED}")

    def check(self, line: int, raw: bytes) -> ExamEvent:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            why = f"not JSON: {exc.msg} at column {exc.colno}"
            raise self.fail(line, f"unreadable line ({why})") from None
        except ValueError:
            raise self.fail(line, "unreadable line (not UTF-8 text)") from None
        if not isinstance(obj, dict):
            raise self.fail(line, "valid JSON but not an exam event (not an object)")
        unknown = sorted(set(obj) - set(ExamEvent.model_fields))
        if unknown:
            raise self.fail(line, f"valid JSON but not an exam event (unknown key {unknown[0]!r})")
        try:
            event = ExamEvent.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "line"
            raise self.fail(
                line, f"valid JSON but not an exam event ({where}: {err['msg']})"
            ) from None
        if event.seq != line:
            if event.seq > line:
                why = f"sequence gap: seq {event.seq} where {line} was expected (lines missing)"
            else:
                why = f"seq {event.seq} repeats or goes back (expected {line})"
            raise self.fail(line, why)
        if event.kind == "exam_started":
            if line != 1:
                raise self.fail(line, "a second exam_started (a line of another exam?)")
            self._start(event)
        elif line == 1:
            raise self.fail(line, f"the journal begins with {event.kind!r}, not exam_started")
        if event.step is not None and event.step not in self.steps:
            raise self.fail(
                line, f"step {event.step!r} is not a step of this exam (a line of another exam?)"
            )
        self._check_clock(line, event)
        self._check_fields(line, event)
        return event

    def _start(self, event: ExamEvent) -> None:
        d = event.data
        steps = d.get("steps")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise self.fail(1, "exam_started lists no steps")
        self.steps = frozenset(steps)
        context = d.get("context")
        if not isinstance(context, dict) or not context:
            raise self.fail(1, "the journal has no resume context (older version?)")
        for key in ("protocol", "room", "exam"):
            if not isinstance(context.get(key), dict):
                raise self.fail(1, f"the resume context lacks {key!r}")
        study = context["exam"].get("study_instance_uid")
        if not isinstance(study, str) or (d.get("study_uid") not in (None, study)):
            raise self.fail(1, "exam_started's study UID does not match its resume context")
        w0 = context.get("wall_at_loop0")
        if not isinstance(w0, str):
            raise self.fail(1, "the resume context lacks 'wall_at_loop0'")
        try:
            self.wall0 = dt.datetime.fromisoformat(w0)
            if self.wall0.tzinfo is None:
                raise ValueError(w0)
        except ValueError:
            raise self.fail(1, f"the resume context's wall_at_loop0 {w0!r} is no time") from None

    def _check_clock(self, line: int, event: ExamEvent) -> None:
        if not math.isfinite(event.t_s):
            raise self.fail(line, f"t_s {event.t_s} is not a time")
        if self.wall0 is None:
            return
        try:
            wall = dt.datetime.fromisoformat(event.wall)
            off = (wall - self.wall0).total_seconds() - event.t_s
        except (ValueError, TypeError, OverflowError):
            raise self.fail(line, f"wall time {event.wall!r} is not a time") from None
        if abs(off) > _CLOCK_TOLERANCE_S:
            raise self.fail(
                line,
                f"its time stamps do not fit this exam's clock (wall {event.wall} at "
                f"t={event.t_s:g} s is {off:+.3f} s off; a line of another exam?)",
            )

    def _check_fields(self, line: int, event: ExamEvent) -> None:
        """The fields recovery reads: a record lacking them cannot be interpreted."""
        d = event.data
        if event.kind == "capture":
            name = d.get("file")
            if not isinstance(name, str) or not _plain_image_name(name):
                raise self.fail(line, f"capture names no image file of this folder ({name!r})")
        elif event.kind == "step_done":
            files = d.get("files", [])
            if not isinstance(d.get("status", ""), str) or not isinstance(files, list):
                raise self.fail(line, "step_done without a valid status and file list")
            if not all(isinstance(f, str) and _plain_image_name(f) for f in files):
                raise self.fail(line, "step_done lists a file outside this folder")
        elif event.kind == "injection_confirmed":
            if not _is_number(d.get("started_at_s")):
                raise self.fail(line, "injection_confirmed without a numeric started_at_s")
        elif event.kind == "command" and d.get("command") in _FIRE_ONCE:
            for key in ("kerma_before_mgy", "planned_s"):
                if d.get(key) is not None and not _is_number(d.get(key)):
                    raise self.fail(line, f"command {d['command']} with a non-numeric {key}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plain_image_name(name: str) -> bool:
    """A file name inside the exam folder (no path, not hidden) ending in .dcm."""
    return (
        name.endswith(".dcm")
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and "\0" not in name
    )


# -- reconstruction ---------------------------------------------------------------------------


def _repair_tail(scan: JournalScan) -> TornTail | None:
    """Keep a torn last line in a side file, then cut it; terminate an unterminated record."""
    path = scan.path
    if scan.torn is None and not scan.unterminated:
        return None
    with path.open("r+b") as f:
        if os.fstat(f.fileno()).st_size != scan.size:
            raise RecoveryError(f"{path}: the journal changed while it was read; {_UNCHANGED}")
        if scan.unterminated:
            f.seek(scan.size)
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return None
        assert scan.torn is not None
        f.seek(scan.good)
        tail = f.read()
        side = _keep_tail(path, scan.torn.line, tail)
        f.truncate(scan.good)
        f.flush()
        os.fsync(f.fileno())
    torn = scan.torn
    return TornTail(torn.line, torn.offset, torn.size, side.name)


def _keep_tail(path: Path, line: int, tail: bytes) -> Path:
    """Write ``tail`` to a new side file (``events.jsonl.torn-<line>[.k]``), fsynced."""
    for k in range(1000):
        side = path.with_name(f"{path.name}{TORN_SUFFIX}{line}" + (f".{k}" if k else ""))
        try:
            fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        try:
            view = memoryview(tail)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return side
    raise RecoveryError(f"{path}: no free name to keep the torn last line; {_UNCHANGED}")
