"""Shared pieces for the host image chain's tests: a small simulated panel and its
calibration (taken as ``fluoroctl calibrate`` takes one)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from drivers.carm import PanelMode
from hardware_sim.panel import calibration_images
from hardware_sim.physics import DetectorModel
from scheduler.imaging import ModeCalibration, calibrate_mode

#: a panel small enough for fast tests, with the full model's fixed patterns
SMALL = DetectorModel(rows=256, cols=256, pixel_mm=0.834, seed=7)


def exposure(det: DetectorModel, counts: float, seed: int) -> npt.NDArray[np.uint16]:
    """A raw open-field frame ``counts`` above the dark offset (quantum + read noise)."""
    rng = np.random.default_rng([seed, 0x7E57])
    signal = np.full((det.rows, det.cols), counts / det.counts_per_kev, np.float32)
    return det.read_out(signal, signal * np.float32(50.0), rng)


def mode_of(det: DetectorModel) -> PanelMode:
    return PanelMode("fluoroscopy", det.rows, det.cols, 2, det.pixel_mm)


@pytest.fixture(scope="session")
def small_calibration() -> ModeCalibration:
    darks = calibration_images(SMALL, "dark", 16)
    flats = calibration_images(SMALL, "flat", 16)
    return calibrate_mode(mode_of(SMALL), darks, flats)
