"""Whole exams' image objects as an archive and a viewer see them.

The standard exam (radiographs, one prone film), the obstruction exam (a fluoroscopy run: a
multi-frame object) and the nephrotomography exam (tomosynthesis layers) run once per session
on the in-process simulator; dicom3tools' ``dciodvfy`` checks every object and ``dcentvfy``
each exam folder as a whole (one patient, one study, series whose attributes agree).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pytest import TempPathFactory

from fluoroctl.testing import ExamRun, RunProtocol
from scheduler.outputs.dicom_ids import IMPLEMENTATION_CLASS_UID, implementation_version_name
from scheduler.protocol import CaptureStep, FluoroStep, TomoStep, load_protocol

from .test_dicom_display import output_top

WALL_ANCHOR = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)
#: a zone with a UTC offset, so local time and UTC differ in every value checked
ZONE = "Europe/Berlin"  # +0100 in March


@pytest.fixture(scope="module")
def _local_zone() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = ZONE
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def _folder(factory: TempPathFactory) -> Path:
    # its own folder: not the session's shared run of the same protocol (another zone)
    return factory.mktemp("local-zone") / "exam"


@pytest.fixture(scope="module")
def standard(
    shared_exam: RunProtocol, _local_zone: None, tmp_path_factory: TempPathFactory
) -> ExamRun:
    return shared_exam("ivu-standard", wall_anchor=WALL_ANCHOR, out=_folder(tmp_path_factory))


@pytest.fixture(scope="module")
def obstruction(
    shared_exam: RunProtocol, _local_zone: None, tmp_path_factory: TempPathFactory
) -> ExamRun:
    return shared_exam(
        "ivu-obstruction",
        patient="left-obstruction",
        wall_anchor=WALL_ANCHOR,
        out=_folder(tmp_path_factory),
    )


@pytest.fixture(scope="module")
def nephrotomography(
    shared_exam: RunProtocol, _local_zone: None, tmp_path_factory: TempPathFactory
) -> ExamRun:
    return shared_exam(
        "ivu-nephrotomography", wall_anchor=WALL_ANCHOR, out=_folder(tmp_path_factory)
    )


EXAMS = ["standard", "obstruction", "nephrotomography"]


def images(exam: ExamRun) -> list[Path]:
    files = sorted(exam.out.glob("[0-9][0-9][0-9]-*.dcm"))
    assert files, "the exam wrote images"
    return files


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} not found: install dicom3tools (apt-get install dicom3tools)")
    return exe


def _run(*cmd: str) -> list[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return (proc.stdout + proc.stderr).splitlines()


# -- validators ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMS)
def test_dciodvfy_finds_no_error_in_any_object(name: str, request: pytest.FixtureRequest) -> None:
    exam: ExamRun = request.getfixturevalue(name)
    exe = _tool("dciodvfy")
    for path in images(exam):
        for flags in ((), ("-new",)):
            errors = [ln for ln in _run(exe, *flags, str(path)) if ln.startswith("Error")]
            assert errors == [], f"{path.name} dciodvfy {' '.join(flags)}: {errors}"


@pytest.mark.parametrize("name", EXAMS)
def test_dcentvfy_finds_no_error_across_the_exam(name: str, request: pytest.FixtureRequest) -> None:
    exam: ExamRun = request.getfixturevalue(name)
    lines = _run(_tool("dcentvfy"), *(str(p) for p in images(exam)))
    errors = [ln for ln in lines if ln.startswith("Error")]
    assert errors == [], errors


# -- series ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMS)
def test_one_series_per_protocol_step(name: str, request: pytest.FixtureRequest) -> None:
    exam: ExamRun = request.getfixturevalue(name)
    protocol = load_protocol(exam.summary["protocol"])
    acquiring = [s for s in protocol.steps if isinstance(s, CaptureStep | FluoroStep | TomoStep)]
    titles = {s.id: s.title for s in acquiring}
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in images(exam)]
    by_series: dict[str, list[pydicom.Dataset]] = {}
    for ds in datasets:
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    steps_of_series = []
    for members in by_series.values():
        steps = {_step(ds, titles) for ds in members}
        assert len(steps) == 1, f"one series holds several steps: {steps}"
        for attr in ("SeriesNumber", "SeriesDescription", "PatientPosition", "SeriesTime"):
            assert len({str(ds.get(attr)) for ds in members}) == 1, attr
        steps_of_series.append(steps.pop())
    assert sorted(steps_of_series) == sorted({_step(ds, titles) for ds in datasets})
    for ds in datasets:
        assert ds.SeriesDescription == titles[_step(ds, titles)]
    numbers = [int(members[0].SeriesNumber) for members in by_series.values()]
    assert len(set(numbers)) == len(numbers), "series numbers are unique in the study"
    # numbered in acquisition order
    first = sorted(by_series.values(), key=lambda m: min(int(ds.InstanceNumber) for ds in m))
    assert [int(m[0].SeriesNumber) for m in first] == list(range(1, len(first) + 1))
    assert len({str(ds.StudyInstanceUID) for ds in datasets}) == 1


def _step(ds: pydicom.Dataset, titles: dict[str, str]) -> str:
    """The protocol step an image was taken by, from its file name's step part."""
    stem = Path(str(ds.filename)).stem.split("-", 1)[1]
    return max((s for s in titles if stem == s or stem.startswith(f"{s}-")), key=len)


def test_tomography_layers_of_one_sweep_share_a_series(nephrotomography: ExamRun) -> None:
    layers = [pydicom.dcmread(p, stop_before_pixels=True) for p in images(nephrotomography)]
    sweeps: dict[str, set[float]] = {}
    for ds in layers:
        if "TomoLayerHeight" in ds:
            sweeps.setdefault(str(ds.SeriesInstanceUID), set()).add(float(ds.TomoLayerHeight))
    assert list(sweeps.values()) == [{80.0, 90.0, 100.0}] * 2


def test_prone_film_has_its_own_series(standard: ExamRun) -> None:
    positions: dict[str, set[str]] = {}
    for p in images(standard):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        positions.setdefault(str(ds.SeriesInstanceUID), set()).add(str(ds.PatientPosition))
    assert all(len(v) == 1 for v in positions.values())
    assert {"HFS", "HFP"} <= set().union(*positions.values())


# -- time, UIDs, file meta, permissions --------------------------------------------------------


@pytest.mark.parametrize("name", EXAMS)
def test_times_are_local_with_their_offset(name: str, request: pytest.FixtureRequest) -> None:
    exam: ExamRun = request.getfixturevalue(name)
    for path in images(exam):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.TimezoneOffsetFromUTC == "+0100"
        acquired = dt.datetime.strptime(str(ds.AcquisitionDateTime), "%Y%m%d%H%M%S.%f%z")
        assert acquired.utcoffset() == dt.timedelta(hours=1)
        assert ds.AcquisitionDate == acquired.strftime("%Y%m%d")
        assert ds.AcquisitionTime == acquired.strftime("%H%M%S.%f")
        # the exam started 09:30 UTC = 10:30 local
        assert ds.StudyDate == "20260304" and ds.StudyTime.startswith("1030")
        assert acquired > WALL_ANCHOR


@pytest.mark.parametrize("name", EXAMS)
def test_uids_and_file_meta_name_fluoroctl(name: str, request: pytest.FixtureRequest) -> None:
    exam: ExamRun = request.getfixturevalue(name)
    for path in images(exam):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        meta = ds.file_meta
        assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert meta.ImplementationVersionName == implementation_version_name()
        # no organisation root in the simulator room: UUID-derived UIDs (PS3.5 §B.2)
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.IrradiationEventUID):
            assert str(uid).startswith("2.25."), uid
            assert len(str(uid)) <= 64


@pytest.mark.parametrize("name", EXAMS)
def test_files_are_readable_by_a_forwarding_service(
    name: str, request: pytest.FixtureRequest
) -> None:
    exam: ExamRun = request.getfixturevalue(name)
    umask = os.umask(0o022)
    os.umask(umask)
    for path in images(exam):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o644 & ~umask, f"{path.name}: {oct(mode)}"
        assert mode & stat.S_IROTH or umask & stat.S_IROTH


# -- display ---------------------------------------------------------------------------------


def _presented(ds: pydicom.Dataset) -> np.ndarray:
    """What a generic viewer shows: modality LUT, then the first VOI, as 0..1 (1 = white)."""
    px = ds.pixel_array
    out = apply_voi_lut(apply_modality_lut(px, ds), ds).astype(np.float64)
    lo, hi = 0.0, output_top(ds)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        return np.asarray((hi - out) / (hi - lo))
    return np.asarray((out - lo) / (hi - lo))


def _field(ds: pydicom.Dataset) -> tuple[slice, slice]:
    """The collimated field (from the Collimator attributes), a few pixels in."""
    inset = 8
    return (
        slice(
            int(ds.CollimatorUpperHorizontalEdge) + inset,
            int(ds.CollimatorLowerHorizontalEdge) - inset,
        ),
        slice(
            int(ds.CollimatorLeftVerticalEdge) + inset, int(ds.CollimatorRightVerticalEdge) - inset
        ),
    )


@pytest.mark.parametrize("name", EXAMS)
def test_viewers_show_the_anatomy_not_a_white_field(
    name: str, request: pytest.FixtureRequest
) -> None:
    exam: ExamRun = request.getfixturevalue(name)
    for path in images(exam):
        ds = pydicom.dcmread(path)
        shown = _presented(ds)
        frame = shown[len(shown) // 2] if shown.ndim == 3 else shown
        inside = frame[_field(ds)]
        white = float((inside >= 0.999).mean())
        black = float((inside <= 0.001).mean())
        # black: only the direct exposure beside the body, as on film
        assert white < 0.03 and black < 0.10, f"{path.name}: white {white:.1%}, black {black:.1%}"
        # the grey scale is used: the middle 90 % of the field spans much of it
        p5, p95 = np.percentile(inside, [5, 95])
        assert p95 - p5 > 0.4, f"{path.name}: {p5:.2f}..{p95:.2f}"
