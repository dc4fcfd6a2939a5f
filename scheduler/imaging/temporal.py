"""Recursive temporal filter for fluoroscopy: ``y_k = α·x_k + (1 − α)·y_{k−1}``.

On a static scene the filtered frames' noise variance settles at ``α / (2 − α)`` of a single
frame's (white noise, frame to frame independent). Motion-adaptive (optional): where a
pixel changed by more than ``motion_threshold`` counts since the filtered frame it follows
the new frame at once (α = 1 there), so moving structures do not smear.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

U16 = npt.NDArray[np.uint16]
F32 = npt.NDArray[np.float32]


def variance_factor(alpha: float) -> float:
    """Steady-state noise variance of the filtered frames relative to one frame's."""
    return alpha / (2.0 - alpha)


class RecursiveFilter:
    """Filters one run's frames in order; ``reset()`` before the next run."""

    def __init__(self, alpha: float, motion_threshold: float | None = None) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"temporal filter weight must be in (0, 1], not {alpha}")
        self.alpha = alpha
        self.motion_threshold = motion_threshold
        self._acc: F32 | None = None

    def reset(self) -> None:
        self._acc = None

    def __call__(self, frame: U16) -> U16:
        """The filtered frame (uint16); the first frame of a run passes unchanged."""
        if self._acc is None or self._acc.shape != frame.shape:
            self._acc = frame.astype(np.float32)
            return frame.copy()
        acc = self._acc
        if self.motion_threshold is None:
            cv2.accumulateWeighted(frame, acc, self.alpha)
        else:
            moved = cv2.absdiff(frame.astype(np.float32), acc) > self.motion_threshold
            cv2.accumulateWeighted(frame, acc, self.alpha)
            acc[moved] = frame[moved]
        out: U16 = np.asarray(cv2.add(acc, np.zeros_like(acc), dtype=cv2.CV_16U), np.uint16)
        return out
