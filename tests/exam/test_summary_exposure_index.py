"""summary.json carries each radiograph's exposure and deviation index (IEC 62494-1)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from drivers import Clock
from drivers.carm import ExposureIndex
from scheduler.exam.results import ExamResult, StepResult
from scheduler.summary import build_summary
from tests.outputs.test_dicom import make_exam, make_record


def test_steps_with_an_indexed_radiograph_report_ei_and_di() -> None:
    base = make_record("radiograph")
    frame = dataclasses.replace(base.frames[0], exposure_index=ExposureIndex(500.0, 250.0))
    record = dataclasses.replace(base, frames=(frame,))
    steps = [
        StepResult(record.step_id, "Nephrogram", "radiograph", "done"),
        StepResult("scout", "Scout", "radiograph", "done"),  # no index: no fields
    ]
    result = ExamResult("completed", "", steps, [record], None, None, 0.0, 10.0)
    loop = asyncio.new_event_loop()
    try:
        summary = build_summary(result, make_exam(), Clock(loop), 1.0, "p.yaml", "room")
    finally:
        loop.close()
    first, second = summary["steps"]
    assert first["exposure_index"] == pytest.approx(500.0)
    assert first["deviation_index"] == pytest.approx(3.01, abs=0.01)
    assert "exposure_index" not in second
