"""Kidneys: position, orientation and parenchyma, for each variant.

* normal: long axes tilted 16° (upper poles medial), hila turned 30° anteriorly, the left
  hilum at L1–L2 and the right kidney 2 cm lower [S52];
* pelvic (ectopic) kidney: in the iliac fossa below the iliac crest, smaller (× 0.85), long
  axis vertical, hilum turned anteriorly (malrotation) [Dyer 2004; Bauer, Campbell-Walsh
  Urology ch. "Anomalies of the upper urinary tract"];
* horseshoe kidney: both kidneys low (L3–L4), long axes reversed (lower poles medial), hila
  anterior, the lower poles joined by a parenchymal isthmus in front of the aorta at L4
  (the inferior mesenteric artery stops its ascent) [Dyer 2004; O'Brien 2008];
* duplex kidney: longer (× 1.12) with two pelvicalyceal systems (see :mod:`._collecting`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._base import Frame, PhantomBase
from ._shapes import Primitive, _unit, _v, cylinder, ellipsoid

F64 = npt.NDArray[np.float64]

# (x offset, AP offset from the spine, z level, tilt°, hilum turn°, size, length factor)
_PLACES: dict[str, tuple[float, float, float, float, float, float, float]] = {
    "pelvic": (50.0, 38.0, -78.0, 0.0, 75.0, 0.85, 0.85),
    "horseshoe": (58.0, 16.0, 46.0, -18.0, 60.0, 1.0, 0.95),
    "duplex": (82.0, 8.0, 0.0, 16.0, 30.0, 1.0, 1.12),
}


class Kidneys(PhantomBase):
    def kidney_at(self, side: str, m: float, w: float, u: float) -> F64:
        """A point in kidney coordinates (medial, thickness, long axis; mm of the adult kidney,
        scaled to this one) in build coordinates."""
        centre, rot = self._kidney_frames[side]
        kk, ku = self._kidney_size[side]
        out: F64 = centre + rot[0] * (m * kk) + rot[1] * (w * kk) + rot[2] * (u * ku)
        return out

    def _kidney_frame(self, side: str) -> Frame:
        sx = 1.0 if side == "left" else -1.0
        variant = self.kidney_variant(side)
        jitter = float(self._rng.normal(0.0, 3.0))
        ks = self.kidney_scale
        if variant in ("pelvic", "horseshoe"):
            dx, dy, zl, tilt_deg, turn_deg, size, length = _PLACES[variant]
            zl -= 0.0 if side == "left" else 5.0
            centre = np.array([sx * dx, self.y_spine + dy, self.z(zl) + jitter])
            self._kidney_size[side] = (size * ks, length * ks)
        else:
            zc = self.z(112.0 if side == "left" else 90.0) + jitter
            centre = np.array([sx * 82.0, self.y_spine + 8.0, zc])
            tilt_deg, turn_deg = 16.0, 30.0
            length = _PLACES["duplex"][6] if variant == "duplex" else 1.0
            self._kidney_size[side] = (ks, length * ks)
        tilt = math.radians(tilt_deg)
        e_long = np.array([-sx * math.sin(tilt), 0.0, math.cos(tilt)])
        m0 = np.array([-sx, 0.0, 0.0])  # toward the midline
        m0 = _unit(m0 - np.dot(m0, e_long) * e_long)
        # turn the hilum anteriorly about the long axis
        ang = math.radians(turn_deg) * sx
        k = e_long
        m = (
            m0 * math.cos(ang)
            + np.cross(k, m0) * math.sin(ang)
            + k * np.dot(k, m0) * (1 - math.cos(ang))
        )
        if m[1] < 0:  # make sure the hilum faces anteriorly
            ang = -ang
            m = m0 * math.cos(ang) + np.cross(k, m0) * math.sin(ang)
        w = np.cross(e_long, m)
        # rows: local x = medial, local y = thickness, local z = long axis
        return centre, np.stack([_unit(m), _unit(w), _unit(e_long)])

    def _kidney(self, side: str) -> list[Primitive]:
        self._kidney_frames[side] = centre, rot = self._kidney_frame(side)
        kk, ku = self._kidney_size[side]
        kid, pel = f"kidney_{side}", f"pelvis_{side}"

        def at(m: float, w: float, u: float) -> F64:
            return self.kidney_at(side, m, w, u)

        self.landmarks[kid] = _v(centre)
        self.landmarks[f"kidney_lateral_{side}"] = _v(at(-16.0, 0.0, 0.0))
        self.landmarks[f"kidney_upper_{side}"] = _v(at(-4.0, 0.0, 36.0))
        self.landmarks[f"kidney_lower_pole_{side}"] = _v(at(0.0, 0.0, -55.0))
        self.landmarks[pel] = _v(at(22.0, 1.0, -6.0))
        if self.kidney_variant(side) == "duplex":
            self.landmarks[f"upj_upper_{side}"] = _v(at(22.0, 1.0, 12.0))
            self.landmarks[f"upj_{side}"] = _v(at(27.0, 1.0, -24.0))
        else:
            self.landmarks[f"upj_{side}"] = _v(at(27.0, 1.0, -18.0))
        fat = 0.4 * self.fat_mm
        return [
            ellipsoid(at(-8.0, 0, 0), (36.0 * kk + fat, 28.0 * kk + fat, 68.0 * ku + fat),
                      "adipose", "soft_tissue", rot, name="perirenal fat"),
            ellipsoid(centre, (27.0 * kk, 18.0 * kk, 55.0 * ku), "kidney", "adipose", rot, kid,
                      1.0, name="kidney"),
            # renal sinus fat: no nephrogram there
            ellipsoid(at(13.0, 0, -2.0), (13.0 * kk, 9.0 * kk, 32.0 * ku), "adipose", "kidney",
                      rot, kid, -1.0, name="renal sinus"),
        ]  # fmt: skip

    def _isthmus(self) -> list[Primitive]:
        """A horseshoe kidney's isthmus: parenchyma joining the lower poles across the midline,
        in front of the aorta and IVC; each half enhances with its own kidney."""
        if self.build.kidney_variant != "horseshoe":
            return []
        kk = self._kidney_size["left"][0]
        y_front = self.y_spine + 17.0 + 14.0 + 22.0  # anterior to the aorta (radius 10.5)
        prims: list[Primitive] = []
        mid = np.array([0.0, y_front, 0.0])
        poles = {s: self.kidney_at(s, 4.0, 0.0, -44.0) for s in ("left", "right")}
        mid[2] = (poles["left"][2] + poles["right"][2]) / 2.0
        self.landmarks["isthmus"] = _v(mid)
        for side, pole in poles.items():
            prims.append(
                cylinder(pole, mid, (12.0 * kk, 9.0 * kk), "kidney", "soft_tissue",
                         f"kidney_{side}", 1.0, name="isthmus")
            )  # fmt: skip
        return prims
