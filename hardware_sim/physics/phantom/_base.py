"""State and geometry helpers every part of the phantom shares."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._build import Finding, PatientBuild
from ._shapes import Vec3

Frame = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


class PhantomBase:
    """Attributes set by :class:`~.Phantom` before the parts are built.

    Parts are built in *build coordinates*: an adult-sized body (175 cm for a child, see
    :attr:`scale`); the finished primitives are scaled by :attr:`scale` about the origin."""

    build: PatientBuild
    scale: float  # build coordinates → patient frame (1 for adults)
    kidney_scale: float  # kidney size relative to the build's adult kidney (1 for adults)
    scale_z: float
    ap_mm: float
    width_mm: float
    fat_mm: float
    bmi: float
    landmarks: dict[str, Vec3]
    ureter_length_mm: float
    ureter_tube_ml: float
    _rng: np.random.Generator
    _kidney_frames: dict[str, Frame]
    _kidney_size: dict[str, tuple[float, float]]  # (cross-section, length) factors
    _ureter_curves: dict[str, list[npt.NDArray[np.float64]]]
    _build_landmarks: dict[str, Vec3]

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

    def kidney_variant(self, side: str) -> str:
        """ "normal", "duplex", "pelvic" or "horseshoe" for the kidney on ``side``."""
        v = self.build.kidney_variant
        if v == "horseshoe":
            return "horseshoe"
        if v == f"duplex_{side}":
            return "duplex"
        if v == f"pelvic_{side}":
            return "pelvic"
        return "normal"

    def findings_of(self, kind: str, side: str | None = None) -> list[Finding]:
        return [
            f for f in self.build.findings if f.kind == kind and (side is None or f.side == side)
        ]
