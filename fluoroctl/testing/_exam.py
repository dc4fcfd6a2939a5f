"""A finished exam as a test sees it: the typed outcome, the journal, the images."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .. import _results

if TYPE_CHECKING:
    from .._sources import PathOrName, ProtocolSource, RoomSource


@dataclass(frozen=True)
class JournalEntry:
    """One line of the exam's journal (``events.jsonl``), as written."""

    seq: int
    #: loop time in s (virtual time on the simulator)
    t_s: float
    wall: str
    #: "scheduler", "operator", "safety" or a device name
    source: str
    kind: str
    step: str | None
    data: Mapping[str, Any] = field(hash=False)


def read_journal(out_dir: str | os.PathLike[str]) -> tuple[JournalEntry, ...]:
    """Every line of ``events.jsonl`` in ``out_dir``, in order."""
    lines = (Path(out_dir) / "events.jsonl").read_text(encoding="utf-8").splitlines()
    entries = []
    for line in lines:
        if line.strip():
            d = json.loads(line)
            entries.append(
                JournalEntry(
                    seq=int(d["seq"]),
                    t_s=float(d["t_s"]),
                    wall=str(d["wall"]),
                    source=str(d["source"]),
                    kind=str(d["kind"]),
                    step=d.get("step"),
                    data=d.get("data") or {},
                )
            )
    return tuple(entries)


@dataclass(frozen=True)
class ExamRun:
    """An exam that ran: :attr:`outcome` (typed) and :attr:`events` (the journal)."""

    outcome: _results.ExamOutcome
    events: tuple[JournalEntry, ...]

    @classmethod
    def from_dir(cls, out_dir: str | os.PathLike[str]) -> ExamRun:
        """The exam recorded in ``out_dir`` (its ``summary.json`` and journal)."""
        return cls(_results.read_outcome(out_dir), read_journal(out_dir))

    @property
    def out(self) -> Path:
        """The exam folder."""
        return self.outcome.out_dir

    @property
    def summary(self) -> Mapping[str, Any]:
        """``summary.json`` as written."""
        return self.outcome.summary

    @property
    def images(self) -> tuple[Path, ...]:
        """The exam's DICOM files, in acquisition order."""
        return self.outcome.images

    def step(self, step_id: str) -> _results.StepOutcome:
        """The protocol step ``step_id`` (:class:`KeyError` naming the ids if absent)."""
        return self.outcome.step(step_id)

    def events_of(
        self, *kinds: str, source: str | None = None, step: str | None = None
    ) -> list[JournalEntry]:
        """Journal entries of any of ``kinds`` (all kinds if none given), optionally only
        from ``source`` and about ``step``, in journal order."""
        return [
            e
            for e in self.events
            if (not kinds or e.kind in kinds)
            and (source is None or e.source == source)
            and (step is None or e.step == step)
        ]


class RunProtocol(Protocol):
    """The call the ``run_protocol`` and ``shared_exam`` fixtures return (for annotations:
    ``def test_x(run_protocol: RunProtocol)``); ``out`` defaults to the fixture's folder,
    other arguments are :func:`run_protocol`'s."""

    def __call__(
        self, protocol: ProtocolSource, *, out: str | os.PathLike[str] | None = None, **options: Any
    ) -> ExamRun: ...


def run_protocol(
    protocol: ProtocolSource,
    *,
    out: str | os.PathLike[str],
    room: RoomSource | None = None,
    patient: PathOrName | None = None,
    faults: Sequence[str] = (),
    operator: Literal["scripted", "terminal"] | None = "scripted",
    wall_anchor: dt.datetime | None = None,
    **options: Any,
) -> ExamRun:
    """Run a whole exam (default: on the built-in simulator, virtual time) and return it
    with its journal. A test has no one at a terminal, so prompts are answered by the
    scripted operator unless ``operator`` says otherwise. ``options`` go to
    :func:`fluoroctl.run_exam` (``force_new``, ``time_scale``, ``endpoints``, ...)."""
    from .._run import run_exam  # the scheduler stack loads when an exam runs, not with pytest

    outcome = run_exam(
        protocol,
        out=out,
        room=room,
        patient=patient,
        faults=faults,
        operator=operator,
        wall_anchor=wall_anchor,
        **options,
    )
    return ExamRun(outcome, read_journal(outcome.out_dir))
