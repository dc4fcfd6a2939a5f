"""The simulated flat panel's own frames: what it reads without a patient (dark and
open-field calibration frames) and its on-board correction with the factory maps."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from .physics import DetectorModel

#: Counts added back after offset subtraction so noise around zero signal is not clipped.
PEDESTAL_COUNTS = 100
#: Panel modes: "raw" delivers frames as read (offset, gain pattern, defects: the host
#: calibrates); "corrected" corrects them on board with the panel's factory maps.
PANEL_MODES = ("raw", "corrected")
#: Open-field flat frames sit this far above the dark offset (≈ 30 % of the 16-bit range).
FLAT_COUNTS = 20000.0
#: Mean absorbed energy per photon of the flat's beam (keV): sets its quantum noise.
FLAT_MEAN_KEV = 50.0


@functools.lru_cache(maxsize=16)
def calibration_images(
    detector: DetectorModel, kind: str, count: int
) -> tuple[npt.NDArray[np.uint16], ...]:
    """Dark or open-field frames of ``detector``, from their own noise stream (the patient's
    frames keep theirs); deterministic, so cached: a simulated panel calibrates once per
    process."""
    rng = np.random.default_rng([detector.seed, 0xCA1, 1 if kind == "flat" else 0])
    shape = (detector.rows, detector.cols)
    if kind == "dark":
        images = [detector.dark(rng) for _ in range(count)]
    else:
        signal = np.full(shape, FLAT_COUNTS / detector.counts_per_kev, np.float32)
        variance = signal * np.float32(FLAT_MEAN_KEV)
        images = [detector.read_out(signal, variance, rng) for _ in range(count)]
    for image in images:
        image.setflags(write=False)
    return tuple(images)


def corrected_on_board(
    raw: npt.NDArray[np.uint16], detector: DetectorModel
) -> npt.NDArray[np.uint16]:
    """On-board correction with the panel's factory maps: offset and gain, defect pixels
    replaced by the mean of their row neighbours.

    Without the offset correction fixed-pattern offsets (row banding) dominate low-dose
    fluoroscopy frames.
    """
    x = raw.astype(np.float32) - detector.offset_map()
    x /= detector.gain_map()
    x += PEDESTAL_COUNTS
    rows, cols, _ = detector.defects()
    left = np.clip(cols - 1, 0, detector.cols - 1)
    right = np.clip(cols + 1, 0, detector.cols - 1)
    x[rows, cols] = 0.5 * (x[rows, left] + x[rows, right])
    out: npt.NDArray[np.uint16] = np.clip(np.rint(x), 0, 65535).astype(np.uint16)
    return out
