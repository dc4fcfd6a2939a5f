"""events.jsonl: every command, device event and capture, one JSON object per line, as it happens.

Lines are flushed as written (a process kill loses nothing already written); lines about
fire-once actions, captures, state changes and faults are also fsynced, so after a machine
crash the journal still says what was done to the patient. ``fluoroctl resume`` rebuilds an
exam from this file alone (see scheduler/recovery.py).

Test hook: with ``FLUOROCTL_CRASH_AFTER_EVENT=N`` in the environment the process kills itself
(SIGKILL, no clean-up) right after writing its N-th line, to test crash recovery.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

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


class Journal:
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
        self._file: TextIO | None = path.open("a", encoding="utf-8")
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
        if self._file is not None:
            self._file.write(event.model_dump_json() + "\n")
            self._file.flush()
            if kind in DURABLE_KINDS:
                os.fsync(self._file.fileno())
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
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def _jsonable(data: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    return result
