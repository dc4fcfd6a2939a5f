"""Storing a test frame through the real DICOM write path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import numpy.typing as npt

from drivers import CollimationField, Dose, Frame, PositionerPose, TablePosition, Technique
from scheduler.outputs import write_capture
from scheduler.records import CaptureRecord, ExamInfo, PatientInfo

T0 = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)


def record_of(frames: list[npt.NDArray[np.uint16]], kind: str = "radiograph") -> CaptureRecord:
    rows, cols = frames[0].shape
    tech = Technique(72.0, 400.0, 80.0)
    pose = PositionerPose()
    field = CollimationField(min(400.0, cols * 0.834), min(400.0, rows * 0.834))
    dose = Dose(0.5, 0.6, 0.1)
    return CaptureRecord(
        step_id="test",
        label="test",
        kind=kind,
        instance_number=1,
        frames=tuple(
            Frame(f, 0.834, 10.0 + 0.1 * i, tech, pose, field, dose) for i, f in enumerate(frames)
        ),
        planned_s=None,
        commanded_s=10.0,
        device_s=10.0,
        acquisition_time=T0,
        after_injection_s=None,
        patient_position="supine",
        technique=tech,
        pose=pose,
        collimation=field,
        table=TablePosition(),
        contrast=None,
        pulse_rate_hz=10.0 if kind == "fluoro" else None,
    )


def exam_info() -> ExamInfo:
    return ExamInfo(
        study_instance_uid="2.25.1234567890",
        series_instance_uid="2.25.1234567891",
        study_id="1",
        accession_number="A1",
        study_description="image chain test",
        procedure_code="74400",
        study_datetime=T0,
        patient=PatientInfo("CHAIN1", "Test^Chain", "O", None),
    )


def store_for_processing(folder: Path, pixels: npt.NDArray[np.uint16]) -> Path:
    return write_capture(record_of([pixels]), exam_info(), folder, for_processing=True)
