"""State and geometry helpers every part of the phantom shares."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._build import PatientBuild
from ._shapes import Vec3


class PhantomBase:
    """Attributes set by :class:`~.Phantom` before the parts are built."""

    build: PatientBuild
    scale_z: float
    ap_mm: float
    width_mm: float
    fat_mm: float
    bmi: float
    landmarks: dict[str, Vec3]
    _rng: np.random.Generator
    _kidney_frames: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]

    # -- geometry helpers ---------------------------------------------------------------------
    def z(self, z_mm: float) -> float:
        return z_mm * self.scale_z

    @property
    def y_back(self) -> float:
        return -self.ap_mm / 2.0

    @property
    def y_spine(self) -> float:
        """AP position of the lumbar vertebral-body centres."""
        return self.y_back + 62.0 + 0.8 * (self.fat_mm - 15.0) + 0.08 * (self.ap_mm - 220.0)

    def body_half_extent_mm(self, angle_deg: float) -> float:
        """Half height of the body cross-section after rotating it by ``angle_deg`` about z."""
        a, b = self.width_mm / 2.0, self.ap_mm / 2.0
        t = math.radians(angle_deg)
        return math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
