"""events.jsonl: every command, device event and capture, one JSON object per line, as it happens.

Lines are flushed as written (a process kill loses nothing already written); lines about
fire-once actions, captures, state changes and faults are also fsynced, so after a machine
crash the journal still says what was done to the patient. ``fluoroctl resume`` rebuilds an
exam from this file alone (see scheduler/recovery.py).

Test hook: with ``FLUOROCTL_CRASH_AFTER_EVENT=N`` in the environment the process kills itself
(SIGKILL, no clean-up) right after writing its N-th line, to test crash recovery.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from drivers import Clock, DeviceEvent

#: kinds whose loss in a crash would hide something done to the patient
DURABLE_KINDS = frozenset(
    {
        "exam_started",
        "command",
        "injection_started",
        "capture",
        "capture_failed",
        "abort",
        "exam_finished",
        "interlock_refused",
        "completed",
        "stopped",
        "faulted",
        "exposure",
        "state",
        "step_done",
        "capture_missed",
        "capture_retry",
        "capture_recovered",
        "injection_confirmed",
        "fault",
        "device_lost",
        "confirmed",
        "declined",
        "exam_resumed",
        "fluoro_started",
        "fluoro_ended",
        "tomo_started",
        "tomo_ended",
        "frames_dropped",
        "start_acknowledged",
    }
)
CRASH_ENV = "FLUOROCTL_CRASH_AFTER_EVENT"


class ExamEvent(BaseModel):
    """One line of the journal."""

    model_config = ConfigDict(frozen=True)

    seq: int
    t_s: float  # loop-monotonic time (virtual under the simulator)
    wall: str  # ISO 8601 UTC, from the clock's wall anchor
    source: str  # "scheduler", "operator", "safety" or a device name
    kind: str
    step: str | None = None
    data: dict[str, Any] = {}


class JournalWriteError(OSError):
    """The journal could not take a line (disk full, I/O error); nothing torn was left."""


#: space held back beside the journal so that the exam's last lines (abort, exam_finished)
#: and its summary can still be written when the disk fills up
RESERVE_BYTES = 1 << 20
RESERVE_SUFFIX = ".reserve"


class Journal:
    """Append-only, line-atomic: a line is on disk whole or not at all.

    Each line goes out in one ``write(2)`` on an ``O_APPEND`` descriptor; a write that fails
    part-way (disk full) is cut back to the last whole line. A reserve file of
    ``RESERVE_BYTES`` is allocated beside the journal when it opens and given back the first
    time the disk is full, so the lines that close the record still fit.
    """

    def __init__(
        self,
        path: Path,
        clock: Clock,
        on_record: Callable[[ExamEvent], None] | None = None,
        *,
        start_seq: int = 0,
    ) -> None:
        self.path = path
        self._on_record = on_record
        self._clock = clock
        self._seq = start_seq
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._reserve = path.with_name(path.name + RESERVE_SUFFIX)
        #: the disk filled up: the reserve was given back to write this journal's lines
        self.out_of_space = False
        self._hold_reserve()
        self.events: list[ExamEvent] = []
        crash = os.environ.get(CRASH_ENV, "")
        self._crash_after = int(crash) if crash.isdigit() else None

    @property
    def seq(self) -> int:
        return self._seq

    def record(
        self, source: str, kind: str, step: str | None = None, t_s: float | None = None, **data: Any
    ) -> ExamEvent:
        t = self._clock.now() if t_s is None else t_s
        self._seq += 1
        event = ExamEvent(
            seq=self._seq,
            t_s=round(t, 6),
            wall=self._clock.wall_at(t).isoformat(timespec="milliseconds"),
            source=source,
            kind=kind,
            step=step,
            data=data,
        )
        self.events.append(event)
        if self._fd is not None:
            self._append((event.model_dump_json() + "\n").encode(), fsync=kind in DURABLE_KINDS)
            if self._crash_after is not None and self._seq >= self._crash_after:
                os.kill(os.getpid(), signal.SIGKILL)  # crash-recovery tests: die right here
        if self._on_record is not None:
            self._on_record(event)
        return event

    def device_listener(self, step_of: Any) -> Any:
        """A listener for :meth:`drivers.EventSource.subscribe` tagging the current step."""

        def listen(event: DeviceEvent) -> None:
            self.record(
                event.device,
                event.kind,
                step_of(),
                t_s=event.device_time_s,
                **_jsonable(event.data),
            )

        return listen

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
                self._reserve.unlink(missing_ok=True)

    def _append(self, line: bytes, *, fsync: bool) -> None:
        assert self._fd is not None
        for attempt in (1, 2):
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, "short write", str(self.path))
                self._size += written
                if fsync:
                    os.fsync(self._fd)
                return
            except OSError as exc:
                os.ftruncate(self._fd, self._size)  # never leave a torn line behind
                if attempt == 1 and exc.errno in _FULL and self._release_reserve():
                    continue
                raise JournalWriteError(
                    exc.errno or errno.EIO, f"cannot append to {self.path}: {exc.strerror or exc}"
                ) from exc

    def _hold_reserve(self) -> None:
        try:
            with self._reserve.open("wb") as f:
                f.write(bytes(RESERVE_BYTES))  # written, not sparse: the blocks are really taken
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self._reserve.unlink(missing_ok=True)  # a full disk is caught at the next check

    def _release_reserve(self) -> bool:
        try:
            self._reserve.unlink()
        except FileNotFoundError:
            return False
        self.out_of_space = True
        return True


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _jsonable(data: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    return result
