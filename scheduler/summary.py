"""summary.json: per step what was planned and what happened; the exam's totals.

The fields are described in docs/results.md. Per step, ``actual_s`` is when it happened as
the device reported it (the same time ``actual_after_injection_s`` and the display show);
``commanded_s`` when the scheduler sent it. Lateness is about timed acquisitions and the
injection start only (see :mod:`scheduler.exam.results`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drivers import Clock

from .exam import ExamResult
from .records import ExamInfo


def build_summary(
    result: ExamResult,
    exam: ExamInfo,
    clock: Clock,
    wall_seconds: float,
    protocol_path: str,
    room_name: str,
) -> dict[str, Any]:
    anchor = result.injection_start_s
    frames = [f for r in result.records for f in r.frames]
    # the dose monitor's count: each run's duration (pedal time, 21 CFR 1020.30(b)), not the
    # sum of its pulse widths; after a restart it includes the runs made before it
    fluoro_s = result.fluoro_time_s
    delivered = result.contrast_delivered_ml
    concentration = (
        result.records[-1].contrast.concentration_mg_ml
        if result.records and result.records[-1].contrast
        else None
    )
    return {
        "protocol": protocol_path,
        "room": room_name,
        "study_instance_uid": exam.study_instance_uid,
        "patient_id": exam.patient.patient_id,
        "state": result.state,
        "reason": result.reason,
        "started": clock.wall_at(result.started_s).isoformat(timespec="milliseconds"),
        "injection_start": None
        if anchor is None
        else clock.wall_at(anchor).isoformat(timespec="milliseconds"),
        "steps": [
            {
                "id": s.id,
                "label": s.label,
                "type": s.type,
                "status": s.status,
                "planned_after_injection_s": s.planned_after_injection_s,
                "planned_s": _r(s.planned_s),
                "commanded_s": _r(s.commanded_s),
                "actual_s": _r(s.device_s),
                "actual_after_injection_s": None
                if anchor is None or s.device_s is None
                else _r(s.device_s - anchor),
                "trigger": s.trigger,
                "command_due_s": _r(s.command_due_s),
                "sent_s": _r(s.sent_s),
                "lateness_s": _r(s.lateness_s),
                "device_lateness_s": _r(s.device_lateness_s),
                "detail": s.detail,
                "files": s.files,
                **_exposure_index(result, s.id),
            }
            for s in result.steps
        ],
        "totals": {
            "images": len(result.records) + len(result.prior),
            "images_before_restart": [p.file for p in result.prior],
            "frames": len(frames),
            "radiographic_exposures": sum(1 for r in result.records if r.kind == "radiograph"),
            "tomo_sweeps": len({s.id for s in result.steps if s.type == "tomo" and s.files}),
            "tomo_layers": sum(1 for r in result.records if r.kind == "tomo"),
            "fluoro_time_s": round(fluoro_s, 3),
            "contrast_delivered_ml": round(delivered, 2),
            "contrast_commanded_ml": round(result.contrast_commanded_ml, 2),
            "contrast_uncommanded_ml": None
            if result.contrast_uncommanded_ml is None
            else round(result.contrast_uncommanded_ml, 2),
            "iodine_delivered_g": None
            if concentration is None
            else round(delivered * concentration / 1000, 2),
            "reference_air_kerma_mgy": round(
                sum(f.dose.reference_air_kerma_mgy for f in frames)
                + sum(p.reference_air_kerma_mgy for p in result.prior),
                3,
            ),
            "dap_gy_cm2": round(
                sum(f.dose.dap_gy_cm2 for f in frames) + sum(p.dap_gy_cm2 for p in result.prior),
                4,
            ),
            "max_abs_lateness_s": _r(_max_abs(s.lateness_s for s in result.steps)),
            "max_abs_device_lateness_s": _r(_max_abs(s.device_lateness_s for s in result.steps)),
            "exam_duration_s": round(result.ended_s - result.started_s, 3),
            "wall_time_s": round(wall_seconds, 3),
            "missed": [s.id for s in result.steps if s.status in ("missed", "failed")],
        },
        "abort_confirmations": result.abort_confirmations,
        "interrupted": result.interrupted,
        "faults": result.faults,
    }


def _exposure_index(result: ExamResult, step_id: str) -> dict[str, Any]:
    """The step's radiograph's exposure and deviation index (IEC 62494-1), when it has one."""
    for r in result.records:
        ei = r.frames[0].exposure_index if r.step_id == step_id and r.frames else None
        if ei is not None:
            return {"exposure_index": round(ei.ei, 1), "deviation_index": round(ei.deviation, 2)}
    return {}


def write_summary(summary: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _max_abs(values: Iterable[float | None]) -> float:
    return max((abs(v) for v in values if v is not None), default=0.0)
