"""Offset, gain and defect-pixel correction of one frame, on its own dtype (uint16 in,
uint16 out), in two whole-frame OpenCV passes plus a gather over the defect pixels."""

from __future__ import annotations

from collections.abc import Collection

import cv2
import numpy as np
import numpy.typing as npt

from drivers.carm import PANEL_CORRECTIONS

from .calibration import ModeCalibration

U16 = npt.NDArray[np.uint16]
F32 = npt.NDArray[np.float32]

#: Counts added after the offset is removed, so noise around zero signal is not clipped
#: (the same pedestal a panel that corrects on board adds).
PEDESTAL_COUNTS = 100.0
#: Fractional bits of the fixed-point gain map (gains up to 4 fit in uint16).
GAIN_BITS = 14
_GAIN_SCALE = 1.0 / (1 << GAIN_BITS)
_NEIGHBOURS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))


class FrameCorrector:
    """Corrects frames of one read-out mode; ``needed`` is what the panel did not do on board.

    ``correct(raw)`` = ``(raw − offset) × gain + PEDESTAL_COUNTS``, each defect pixel then
    replaced by the mean of its good 8-neighbours. It runs in uint16 end to end, as
    ``raw × gain − (offset × gain − pedestal)``: one saturating multiply by the gain in
    fixed point (GAIN_BITS fractional bits: 6e-5 relative, far below the noise), one
    saturating subtract. Values that saturate in the multiply (raw × gain ≥ 65535, the top
    ≈ 1.5 % of the range for a pixel of gain 1.02) stay saturated.
    """

    def __init__(
        self, calibration: ModeCalibration, needed: Collection[str] = PANEL_CORRECTIONS
    ) -> None:
        self.calibration = calibration
        self.needed = frozenset(needed) & PANEL_CORRECTIONS
        cal = calibration
        gain = cal.gain if "gain" in self.needed else np.ones_like(cal.gain)
        self._gain: U16 | None = None
        if "gain" in self.needed:
            self._gain = _u16(gain * np.float32(1 << GAIN_BITS))
        self._bias: U16 | None = None
        if "offset" in self.needed:
            self._bias = _u16(cal.offset * gain - np.float32(PEDESTAL_COUNTS))
        self._defects = _defect_gather(cal.defects) if "defects" in self.needed else None

    def correct(self, raw: U16) -> U16:
        """The corrected frame (a new array; ``raw`` is not modified)."""
        shape = (self.calibration.mode.rows, self.calibration.mode.cols)
        if raw.shape != shape or raw.dtype != np.uint16:
            raise ValueError(f"frame {raw.dtype} {raw.shape} is not uint16 {shape}")
        if self._gain is not None:
            out: U16 = np.asarray(cv2.multiply(raw, self._gain, scale=_GAIN_SCALE), np.uint16)
            if self._bias is not None:
                cv2.subtract(out, self._bias, dst=out)
        elif self._bias is not None:
            out = np.asarray(cv2.subtract(raw, self._bias), np.uint16)
        else:
            out = raw.copy()
        if self._defects is not None:
            targets, sources, weights = self._defects
            flat = out.reshape(-1)
            values = flat[sources].astype(np.float32)
            flat[targets] = np.rint((values * weights).sum(axis=1)).astype(np.uint16)
        return out


def _u16(x: F32) -> U16:
    out: U16 = np.ascontiguousarray(np.clip(np.rint(x), 0, 65535).astype(np.uint16))
    return out


def _defect_gather(
    defects: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F32] | None:
    """(defect flat indices, their 8 neighbours' flat indices, weights summing to 1 over
    the good ones), or None if there is no defect."""
    rows, cols = defects.shape
    r, c = np.nonzero(defects)
    if r.size == 0:
        return None
    nr = np.clip(r[:, None] + np.array([d[0] for d in _NEIGHBOURS]), 0, rows - 1)
    nc = np.clip(c[:, None] + np.array([d[1] for d in _NEIGHBOURS]), 0, cols - 1)
    good = ~defects[nr, nc]
    weights = good.astype(np.float32)
    count = weights.sum(axis=1, keepdims=True)
    weights = np.where(count > 0, weights / np.maximum(count, 1), np.float32(1.0 / 8))
    return r * cols + c, nr * cols + nc, weights.astype(np.float32)
