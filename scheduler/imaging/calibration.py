"""Calibration maps from dark and flat frames, per panel read-out mode.

offset = mean of the dark frames; gain = mean(flat − offset) / (flat − offset), so a
corrected frame ``(raw − offset) × gain`` keeps the panel's mean scale (flat-field
correction, FFC [S142]); defect pixels are those whose dark or flat response stands far
out of their neighbourhood's (stuck, hot, dead or saturated).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from drivers.carm import PanelMode

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]

#: A pixel whose flat response differs from its neighbourhood's by more than this fraction
#: is a defect (the panel's fixed-pattern gain stays within ±6 %).
GAIN_DEFECT_FRACTION = 0.3
#: A pixel whose dark value is this many robust σ off its neighbourhood's is a defect.
DARK_DEFECT_SIGMAS = 12.0
#: Gain correction is capped at this factor either way (a weaker pixel is a defect).
MAX_GAIN = 2.0


class CalibrationError(Exception):
    """A calibration cannot be used: missing, stale, mismatched or unreadable (one line)."""


@dataclass(frozen=True)
class ModeCalibration:
    """The maps of one read-out mode (float32/bool arrays of the mode's rows × cols)."""

    mode: PanelMode
    offset: F32
    gain: F32
    defects: npt.NDArray[np.bool_]
    dark_frames: int
    flat_frames: int


@dataclass(frozen=True)
class RoomCalibration:
    """A room's calibration: one set of maps per panel mode, taken at ``taken_at`` (UTC)."""

    device: str
    taken_at: dt.datetime
    modes: dict[str, ModeCalibration]

    def for_shape(self, rows: int, cols: int, spacing_mm: float) -> ModeCalibration | None:
        """The calibration of the mode a frame of this size and pixel spacing was read in."""
        for cal in self.modes.values():
            m = cal.mode
            if (m.rows, m.cols) == (rows, cols) and abs(m.pixel_spacing_mm - spacing_mm) < 1e-6:
                return cal
        return None


def calibrate_mode(
    mode: PanelMode, darks: list[U16] | tuple[U16, ...], flats: list[U16] | tuple[U16, ...]
) -> ModeCalibration:
    """The maps of ``mode`` from its dark and flat frames (``ValueError`` if unusable)."""
    shape = (mode.rows, mode.cols)
    for name, frames in (("dark", darks), ("flat", flats)):
        if not frames:
            raise ValueError(f"no {name} frames for {mode.name}")
        for f in frames:
            if f.shape != shape:
                raise ValueError(f"{name} frame {f.shape} is not the {mode.name} size {shape}")
    offset = _mean(darks)
    flat = _mean(flats)
    signal = flat - offset
    level = float(np.median(signal[:: max(1, mode.rows // 256), :: max(1, mode.cols // 256)]))
    if level <= 0:
        raise ValueError(f"{mode.name}: the flat frames are no brighter than the dark ones")
    defects = _defects(offset, signal, flat)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.float32(level) / signal
    gain[~np.isfinite(gain)] = 1.0
    np.clip(gain, 1.0 / MAX_GAIN, MAX_GAIN, out=gain)
    gain[defects] = 1.0
    return ModeCalibration(mode, offset, gain.astype(np.float32), defects, len(darks), len(flats))


def _mean(frames: list[U16] | tuple[U16, ...]) -> F32:
    acc = np.zeros(frames[0].shape, np.float64)
    for f in frames:
        acc += f
    out: F32 = (acc / len(frames)).astype(np.float32)
    return out


def _defects(offset: F32, signal: F32, flat: F32) -> npt.NDArray[np.bool_]:
    """Pixels out of line with their 5×5 neighbourhood in the dark or the flat response,
    or saturated in the flat."""
    local_signal = cv2.medianBlur(_u16(signal), 5).astype(np.float32)
    gain_bad = np.abs(signal - local_signal) > GAIN_DEFECT_FRACTION * np.maximum(local_signal, 1)
    local_dark = cv2.medianBlur(_u16(offset), 5).astype(np.float32)
    dev = offset - local_dark
    sigma = 1.4826 * float(np.median(np.abs(dev))) + 1e-3
    dark_bad = np.abs(dev) > DARK_DEFECT_SIGMAS * sigma
    out: npt.NDArray[np.bool_] = gain_bad | dark_bad | (flat >= 65535.0 - 0.5)
    return out


def _u16(x: F32) -> U16:
    """For medianBlur, which takes a 5×5 aperture on uint16 but not on float32."""
    out: U16 = np.clip(np.rint(x), 0, 65535).astype(np.uint16)
    return out
