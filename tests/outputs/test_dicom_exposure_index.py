"""Exposure index (IEC 62494-1) of a radiograph in its DICOM object: Exposure Index,
Target Exposure Index, Deviation Index (0018,1411–1413), and still a valid XRF object."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom
import pytest

from drivers.carm import AecMode, ExposureIndex
from scheduler.outputs import write_capture
from tests.outputs.test_dicom import (
    ALLOWED_NOT_IN_IOD,
    TAG_IN_MESSAGE,
    dciodvfy,
    make_exam,
    make_record,
)

#: The Exposure Index Macro (PS3.3 C.8.11.7.1) belongs to the DX/CR IODs; written into the XRF
#: object on purpose, as the dose attributes are: dciodvfy warns, must not err.
EI_TAGS = {(0x0018, 0x1411), (0x0018, 0x1412), (0x0018, 0x1413)}


def assert_valid_with_ei(path: Path) -> None:
    for flags in ((), ("-new",)):
        lines = dciodvfy(path, *flags)
        assert not [ln for ln in lines if ln.startswith("Error")], lines
        for ln in lines:
            if ln.startswith("Warning") and "Standard Extended SOP Class" not in ln:
                tag = TAG_IN_MESSAGE.search(ln)
                assert "not present in standard DICOM IOD" in ln, ln
                assert tag and (int(tag[1], 16), int(tag[2], 16)) in ALLOWED_NOT_IN_IOD | EI_TAGS


def test_exposure_and_deviation_index_are_written(tmp_path: Path) -> None:
    base = make_record("radiograph")
    technique = dataclasses.replace(base.technique, aec=AecMode(("centre",), 300.0))
    frame = dataclasses.replace(
        base.frames[0], technique=technique, exposure_index=ExposureIndex(600.0, 300.0)
    )
    record = dataclasses.replace(base, frames=(frame,), technique=technique)
    path = write_capture(record, make_exam(), tmp_path)
    ds = pydicom.dcmread(path)
    assert float(ds.ExposureIndex) == pytest.approx(600.0)
    assert float(ds.TargetExposureIndex) == pytest.approx(300.0)
    assert float(ds.DeviationIndex) == pytest.approx(3.01, abs=0.01)  # twice the target
    assert_valid_with_ei(path)


def test_without_an_index_nothing_is_written(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_capture(make_record("radiograph"), make_exam(), tmp_path))
    assert "ExposureIndex" not in ds
    assert "DeviationIndex" not in ds
