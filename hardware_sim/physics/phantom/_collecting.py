"""Pelvicalyceal systems: calyces, infundibula and renal pelvis, sized by their urine volume.

A duplex kidney has two systems [Dyer 2004; Callahan, Radiographics 2001 "The
Weigert–Meyer rule"]: the upper moiety drains the three upper calyces through its own small
pelvis, the lower moiety the other five.  A renal-pelvis tumour is a soft-tissue mass in the
pelvis lumen (urothelial carcinoma): contrast cannot fill where it is, a filling defect
[Browne, Radiographics 2005].  A cyst pushes the calyces within reach aside (they are
displaced to its rim plus 6 mm) and removes the nephrogram where it is (:mod:`._findings`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._kidneys import Kidneys
from ._shapes import Primitive, _axes_along, _unit, cylinder, ellipsoid

F64 = npt.NDArray[np.float64]
CALYX_ANGLES_DEG = (5.0, 32.0, 58.0, 78.0, 100.0, 122.0, 148.0, 175.0)
UPPER_MOIETY_BELOW_DEG = 70.0  # calyces above this angle from the upper pole: upper moiety
TUMOUR_IODINE_SCALE = -1.0  # the mass displaces its own volume of urine
#: semi-axis across the pelvis: the pelvis's is 5.5·k (k ≤ 1.8), so the mass fills the lumen's
#: whole depth at any volume — a sessile tumour seen en face
TUMOUR_DEPTH = 11.0


class Collecting(Kidneys):
    PELVIS_REFERENCE_ML = 7.0

    def _collecting_build(self, side: str, volume_ml: float | None) -> list[Primitive]:
        """:meth:`collecting_system` in build coordinates."""
        _centre, rot = self._kidney_frames[side]
        kk = self._kidney_size[side][0]
        pel = f"pelvis_{side}"
        v = self.PELVIS_REFERENCE_ML if volume_ml is None else max(volume_ml, 0.1)
        v_build = v / self.scale**3
        ref = self.PELVIS_REFERENCE_ML * kk**3
        k = float(np.clip((v_build / ref) ** (1.0 / 3.0), 0.7, 1.8))
        ks = k * kk
        duplex = self.kidney_variant(side) == "duplex"

        def at(m: float, w: float, u: float) -> F64:
            return self.kidney_at(side, m, w, u)

        pelvis_c = at(20.0 + 2.0 * k, 1.0, -12.0 if duplex else -6.0)
        prims = [
            ellipsoid(pelvis_c, (11.0 * ks, 5.5 * ks, 14.0 * ks), None, None, rot, pel, 1.0,
                      name="renal pelvis"),
        ]  # fmt: skip
        junction_upper = at(15.0, 0.0, 16.0)
        junction_lower = at(15.0, 0.0, -24.0)
        if duplex:
            junction_upper = at(17.0, 1.0, 22.0)
            prims.append(ellipsoid(junction_upper, (6.0 * ks, 4.0 * ks, 8.0 * ks), None, None,
                                   rot, pel, 1.0, name="upper-moiety pelvis"))  # fmt: skip
            prims.append(cylinder(pelvis_c, junction_lower, 3.0 * ks, None, None, pel,
                                  name="major calyx"))  # fmt: skip
        else:
            for j0 in (junction_upper, junction_lower):
                prims.append(cylinder(pelvis_c, j0, 3.0 * ks, None, None, pel, name="major calyx"))
        cysts = [
            (self._finding_centre(f), f.diameter_mm / 2.0) for f in self.findings_of("cyst", side)
        ]
        sinus = at(13.0, 0.0, -2.0)
        # minor calyces: cups around the sinus, concave toward the papillae
        for i, a_deg in enumerate(CALYX_ANGLES_DEG):
            a = math.radians(a_deg)
            u = 38.0 * math.cos(a)
            mm = 11.0 - 21.0 * math.sin(a)
            w = (5.0 if i % 2 else -5.0) if 60 < a_deg < 125 else 0.0
            cpt = at(mm, w, u)
            for c, r in cysts:
                gap = cpt - c
                dist = float(np.linalg.norm(gap))
                if dist < r + 6.0:  # displaced to the cyst's rim
                    cpt = c + _unit(gap if dist > 1e-6 else cpt - sinus) * (r + 6.0)
            radial = _unit(cpt - sinus)
            neck = cpt - radial * 8.0 * kk
            if duplex:
                hub = (
                    junction_upper
                    if a_deg < UPPER_MOIETY_BELOW_DEG
                    else (junction_lower if a_deg > 110 else pelvis_c)
                )
            else:
                hub = junction_upper if a_deg < 70 else junction_lower if a_deg > 110 else pelvis_c
            prims.append(cylinder(hub, neck, 1.8 * ks, None, None, pel, name="infundibulum"))
            cup_rot = _axes_along(radial)
            prims.append(ellipsoid(cpt, (5.0 * ks, 5.0 * ks, 4.5 * ks), None, None, cup_rot, pel,
                                   1.0, name="calyx"))  # fmt: skip
            if v < 15.0:
                prims.append(ellipsoid(cpt + radial * 4.0 * ks, (3.4 * ks, 3.4 * ks, 3.4 * ks),
                                       None, None, cup_rot, pel, -1.0, name="papilla"))  # fmt: skip
        for f in self.findings_of("pelvis_tumour", side):
            r = f.diameter_mm / 2.0 / self.scale
            c = pelvis_c + rot[2] * (3.0 * ks)
            prims.append(ellipsoid(c, (r, TUMOUR_DEPTH * kk, r), None, None, rot, pel,
                                   TUMOUR_IODINE_SCALE, name="pelvis tumour"))  # fmt: skip
        return prims

    def _finding_centre(self, f: object) -> F64:
        raise NotImplementedError  # provided by Findings
