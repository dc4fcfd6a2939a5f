"""Offset, gain and defect correction restore what a raw panel hides: a flat field is flat,
defect pixels are gone, and noise follows the dose again (σ/S ∝ mAs^-1/2)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pydicom

from scheduler.imaging import FrameCorrector, ModeCalibration
from scheduler.imaging.calibration import calibrate_mode

from .conftest import SMALL, exposure, mode_of


def _outliers(image: npt.NDArray[np.generic]) -> int:
    """Pixels more than 25 % off the median of their 3×3 neighbourhood (a defect's mark;
    the gain pattern and the noise stay well inside)."""
    x = image.astype(np.float64)
    pad = np.pad(x, 1, mode="edge")
    rows, cols = x.shape
    stack = [
        pad[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
        if (dr, dc) != (0, 0)
    ]
    med = np.median(np.stack(stack), axis=0)
    return int((np.abs(x - med) > 0.25 * np.maximum(med, 1.0)).sum())


def _rel_noise(image: npt.NDArray[np.generic]) -> float:
    x = image.astype(np.float64)[8:-8, 8:-8]
    return float(x.std() / x.mean())


def test_defects_found_where_the_panel_has_them(small_calibration: ModeCalibration) -> None:
    r, c, _ = SMALL.defects()
    truth = np.zeros((SMALL.rows, SMALL.cols), bool)
    truth[r, c] = True
    assert np.array_equal(small_calibration.defects, truth)


def test_flat_field_residual_and_defects_gone(small_calibration: ModeCalibration) -> None:
    # a flat at another level than the calibration's, averaged so the noise is small
    frames = [exposure(SMALL, 6000.0, seed) for seed in range(8)]
    corrector = FrameCorrector(small_calibration)
    raw = np.mean([f.astype(np.float64) for f in frames], axis=0)
    corrected = np.mean([corrector.correct(f).astype(np.float64) for f in frames], axis=0)
    signal = raw - SMALL.offset_map()
    # raw: the ±2 % gain pattern and the defects; corrected: only the averaged noise
    assert _outliers(frames[0]) >= 20
    assert _outliers(corrector.correct(frames[0])) == 0
    residual_raw = _rel_noise(signal)
    residual = _rel_noise(corrected)
    assert residual_raw > 0.015
    assert residual < 0.4 * residual_raw
    assert residual < 0.006  # what 8 frames of quantum noise leave (≈ 0.26 %), with margin


def test_noise_follows_the_dose_on_stored_images(
    small_calibration: ModeCalibration, tmp_path
) -> None:
    """σ/S of a stored (for processing) image halves when the mAs quadruples."""
    from tests.imaging.stored import store_for_processing

    corrector = FrameCorrector(small_calibration)
    low, high = exposure(SMALL, 3000.0, 1), exposure(SMALL, 12000.0, 2)
    stored = [
        pydicom.dcmread(store_for_processing(tmp_path / name, corrector.correct(f))).pixel_array
        for name, f in (("low", low), ("high", high))
    ]
    ratio = (_rel_noise(stored[0] - 100.0)) / _rel_noise(stored[1] - 100.0)
    raw_ratio = _rel_noise(low - SMALL.offset_map()) / _rel_noise(high - SMALL.offset_map())
    assert abs(ratio - 2.0) < 0.2  # √(mAs ratio 4)
    # raw: defect pixels and the gain pattern, not the quanta, set σ/S
    assert abs(raw_ratio - 2.0) > 0.5


def test_calibration_from_an_empty_flat_is_refused() -> None:
    from hardware_sim.panel import calibration_images

    darks = calibration_images(SMALL, "dark", 2)
    try:
        calibrate_mode(mode_of(SMALL), darks, darks)
    except ValueError as exc:
        assert "no brighter" in str(exc)
    else:
        raise AssertionError("a flat as dark as the darks made a calibration")
