"""An exam's outcome as typed, frozen objects, read from what the exam wrote.

``summary.json`` is the record every end of an exam leaves (completed, aborted, faulted,
interrupted, resumed); the objects here are that record with types, so an outcome read back
from a folder is the same as the one a run returns. The raw dict stays on
:attr:`ExamOutcome.summary`.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from scheduler.exit_codes import EXIT_OK
from scheduler.exit_codes import exit_code_of as _exit_code_of
from scheduler.state import RunState


class StepStatus(enum.StrEnum):
    """Where a protocol step ended (``pending``/``running`` only in an exam cut short)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    LATE = "late"
    MISSED = "missed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StepOutcome:
    """One protocol step: what was planned and what happened, on the exam's loop clock.

    ``planned_s`` is when the step was due, ``commanded_s`` when the scheduler commanded it
    and ``actual_s`` when the device reported doing it (the exposure, the injection start) —
    "actual" means the device-reported time everywhere (summary.json, the run table).
    ``*_after_injection_s`` are relative to the injector-reported injection start.
    """

    id: str
    label: str
    type: str
    status: StepStatus
    planned_s: float | None
    commanded_s: float | None
    actual_s: float | None
    planned_after_injection_s: float | None
    actual_after_injection_s: float | None
    lateness_s: float | None
    device_lateness_s: float | None
    detail: str
    images: tuple[Path, ...]

    @property
    def finished(self) -> bool:
        """Done or taken late (the states ``fluoroctl run`` exits 0 with)."""
        return self.status in (StepStatus.DONE, StepStatus.LATE)


@dataclass(frozen=True)
class DoseReport:
    """Radiation given in the exam (images from before a restart included)."""

    reference_air_kerma_mgy: float
    dap_gy_cm2: float
    fluoro_time_s: float
    radiographic_exposures: int


@dataclass(frozen=True)
class Totals:
    """``summary.json``'s ``totals``."""

    images: int
    frames: int
    radiographic_exposures: int
    tomo_sweeps: int
    tomo_layers: int
    fluoro_time_s: float
    contrast_delivered_ml: float
    iodine_delivered_g: float | None
    reference_air_kerma_mgy: float
    dap_gy_cm2: float
    max_abs_lateness_s: float | None
    max_abs_device_lateness_s: float | None
    exam_duration_s: float
    wall_time_s: float
    missed: tuple[str, ...]
    images_before_restart: tuple[str, ...]


@dataclass(frozen=True)
class ExamOutcome:
    """How an exam ended and what it produced.

    ``exit_code`` is what ``fluoroctl run`` exits with for the same end (0 completed, 3
    completed with steps missed or failed, 1 aborted or faulted, 130 interrupted; see
    :mod:`scheduler.exit_codes`). ``images`` are the exam's DICOM files in acquisition order.
    """

    state: RunState
    reason: str
    exit_code: int
    out_dir: Path
    protocol: str
    room: str
    patient_id: str
    study_instance_uid: str
    started: dt.datetime
    injection_start: dt.datetime | None
    steps: tuple[StepOutcome, ...]
    images: tuple[Path, ...]
    totals: Totals
    #: each device's answer to the abort (role → "safe" or why not); empty if none ran
    abort_confirmations: Mapping[str, str] = field(hash=False)
    interrupted: bool
    faults: tuple[str, ...]
    #: the raw ``summary.json`` (read-only)
    summary: Mapping[str, Any] = field(hash=False)

    @property
    def ok(self) -> bool:
        """Completed with every step done or taken late (exit code 0)."""
        return self.exit_code == EXIT_OK

    @property
    def contrast_delivered_ml(self) -> float:
        """Contrast the injector reported delivering."""
        return self.totals.contrast_delivered_ml

    @property
    def dose(self) -> DoseReport:
        t = self.totals
        return DoseReport(
            t.reference_air_kerma_mgy, t.dap_gy_cm2, t.fluoro_time_s, t.radiographic_exposures
        )

    @property
    def unfinished_steps(self) -> tuple[str, ...]:
        """Steps that ended missed or failed."""
        return self.totals.missed

    def step(self, step_id: str) -> StepOutcome:
        """The step with this id; :class:`KeyError` naming the ids there are."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(f"no step {step_id!r} (steps: {', '.join(s.id for s in self.steps)})")


def exit_code_of(state: RunState, interrupted: bool, unfinished: tuple[str, ...]) -> int:
    """:func:`scheduler.exit_codes.exit_code_of` for an outcome read from ``summary.json``."""
    return _exit_code_of(state.value, interrupted, unfinished)


def outcome_from_summary(
    summary: Mapping[str, Any], out_dir: Path, exit_code: int | None = None
) -> ExamOutcome:
    """The typed outcome of the exam whose ``summary.json`` content is ``summary``.

    ``exit_code`` is the run's own (from ``exit_code_for``); without it, it is derived from
    the summary by the same rules.
    """
    out_dir = Path(out_dir)
    t = summary["totals"]
    totals = Totals(
        images=int(t["images"]),
        frames=int(t["frames"]),
        radiographic_exposures=int(t["radiographic_exposures"]),
        tomo_sweeps=int(t["tomo_sweeps"]),
        tomo_layers=int(t["tomo_layers"]),
        fluoro_time_s=float(t["fluoro_time_s"]),
        contrast_delivered_ml=float(t["contrast_delivered_ml"]),
        iodine_delivered_g=_float(t.get("iodine_delivered_g")),
        reference_air_kerma_mgy=float(t["reference_air_kerma_mgy"]),
        dap_gy_cm2=float(t["dap_gy_cm2"]),
        max_abs_lateness_s=_float(t.get("max_abs_lateness_s")),
        max_abs_device_lateness_s=_float(t.get("max_abs_device_lateness_s")),
        exam_duration_s=float(t["exam_duration_s"]),
        wall_time_s=float(t["wall_time_s"]),
        missed=tuple(str(m) for m in t.get("missed", [])),
        images_before_restart=tuple(str(f) for f in t.get("images_before_restart", [])),
    )
    steps = tuple(_step(s, out_dir) for s in summary["steps"])
    state = RunState(summary["state"])
    interrupted = bool(summary.get("interrupted", False))
    if exit_code is None:
        exit_code = exit_code_of(state, interrupted, totals.missed)
    names = [*totals.images_before_restart, *(p.name for s in steps for p in s.images)]
    injection = summary.get("injection_start")
    return ExamOutcome(
        state=state,
        reason=str(summary.get("reason", "")),
        exit_code=exit_code,
        out_dir=out_dir,
        protocol=str(summary["protocol"]),
        room=str(summary["room"]),
        patient_id=str(summary["patient_id"]),
        study_instance_uid=str(summary["study_instance_uid"]),
        started=dt.datetime.fromisoformat(summary["started"]),
        injection_start=None if injection is None else dt.datetime.fromisoformat(injection),
        steps=steps,
        # File names start with the instance number: sorted by name is acquisition order.
        images=tuple(out_dir / n for n in sorted(dict.fromkeys(names))),
        totals=totals,
        abort_confirmations=MappingProxyType(dict(summary.get("abort_confirmations") or {})),
        interrupted=interrupted,
        faults=tuple(str(f) for f in summary.get("faults", [])),
        summary=MappingProxyType(dict(summary)),
    )


def read_outcome(out_dir: str | os.PathLike[str]) -> ExamOutcome:
    """The outcome of the exam in ``out_dir``, from its ``summary.json`` (written on every
    end of an exam, including an interrupted one). :class:`FileNotFoundError` if the folder
    holds no finished exam."""
    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    return outcome_from_summary(summary, out_dir)


def _step(s: Mapping[str, Any], out_dir: Path) -> StepOutcome:
    return StepOutcome(
        id=str(s["id"]),
        label=str(s["label"]),
        type=str(s["type"]),
        status=StepStatus(s["status"]),
        planned_s=_float(s.get("planned_s")),
        commanded_s=_float(s.get("commanded_s")),
        actual_s=_float(s.get("actual_s")),
        planned_after_injection_s=_float(s.get("planned_after_injection_s")),
        actual_after_injection_s=_float(s.get("actual_after_injection_s")),
        lateness_s=_float(s.get("lateness_s")),
        device_lateness_s=_float(s.get("device_lateness_s")),
        detail=str(s.get("detail", "")),
        images=tuple(out_dir / str(f) for f in s.get("files", [])),
    )


def _float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"expected a number or null in summary.json, got {value!r}")
