"""The standard exam's stored images: the panel's gain pattern and defect pixels are gone.

Measured against the simulated panel's own fixed patterns (its gain map and defect list),
on the stored display images, and against a raw frame of the same panel stored the same way.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from fluoroctl.testing import ExamRun, RunProtocol
from hardware_sim.physics import DetectorModel
from hardware_sim.scenario import load_scenario, resolve_scenario_path
from scheduler.outputs import write_capture

from .stored import exam_info, record_of

#: as tests/exam/conftest.py: the session's one standard exam serves both folders' tests
WALL_ANCHOR = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)
#: a defect pixel still shows if it stands this many noise σ off its neighbours' median
DEFECT_SIGMAS = 8.0


@pytest.fixture(scope="session")
def standard(shared_exam: RunProtocol) -> ExamRun:
    return shared_exam("ivu-standard", wall_anchor=WALL_ANCHOR)


@pytest.fixture(scope="module")
def panel() -> DetectorModel:
    seed = load_scenario(resolve_scenario_path("normal", Path("."))).seed
    return DetectorModel(seed=seed)  # the simulated C-arm's radiography panel


def _ramp(det: DetectorModel) -> npt.NDArray[np.uint16]:
    """A raw frame of a smooth ramp (2000 → 16000 counts over the rows): a grey scale wide
    enough for the display window to show the fixed patterns, as anatomy would."""
    rng = np.random.default_rng(3)
    counts = np.linspace(2000.0, 16000.0, det.rows, dtype=np.float32)[:, None]
    signal = np.repeat(counts / np.float32(det.counts_per_kev), det.cols, axis=1)
    return det.read_out(signal, signal * np.float32(50.0), rng)


def _high_pass(x: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    f = x.astype(np.float32)
    return (f - cv2.GaussianBlur(f, (0, 0), 3.0)).astype(np.float64)


def _measure(ds: pydicom.Dataset, panel: DetectorModel) -> tuple[float, int, int]:
    """(correlation of the image's fine structure with the gain pattern's, defect pixels
    still visible, defect pixels inside the field)."""
    v = ds.pixel_array.astype(np.float64)
    field = np.zeros(v.shape, bool)
    field[
        ds.ShutterUpperHorizontalEdge + 5 : ds.ShutterLowerHorizontalEdge - 5,
        ds.ShutterLeftVerticalEdge + 5 : ds.ShutterRightVerticalEdge - 5,
    ] = True
    hv = _high_pass(v)
    hg = _high_pass(np.log(panel.gain_map()))
    corr = float(np.corrcoef(hv[field], hg[field])[0, 1])
    noise = 1.4826 * float(np.median(np.abs(hv[field])))
    r, c, _ = panel.defects()
    pad = np.pad(v, 1, mode="edge")
    around = [
        pad[1 + dr + r, 1 + dc + c] for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)
    ]
    dev = np.abs(v[r, c] - np.median(np.stack(around), axis=0))
    inside = field[r, c]
    return corr, int((dev[inside] > DEFECT_SIGMAS * noise).sum()), int(inside.sum())


def test_gain_pattern_and_defects_gone(standard: ExamRun, panel: DetectorModel, tmp_path) -> None:
    radiographs = [p for p in standard.images if pydicom.dcmread(p).Rows == panel.rows]
    assert len(radiographs) >= 5
    # the same panel's raw frame, stored the same way: the patterns the metric must see
    raw = _ramp(panel)
    raw_ds = pydicom.dcmread(write_capture(record_of([raw]), exam_info(), tmp_path))
    raw_corr, raw_defects, raw_inside = _measure(raw_ds, panel)
    assert raw_corr < -0.2 and raw_defects >= raw_inside // 2 > 0
    for path in radiographs:
        corr, visible, inside = _measure(pydicom.dcmread(path), panel)
        assert inside > 0
        assert abs(corr) < 0.05, f"{path.name}: gain pattern left (r = {corr:.3f})"
        assert visible == 0, f"{path.name}: {visible} of {inside} defect pixels visible"
