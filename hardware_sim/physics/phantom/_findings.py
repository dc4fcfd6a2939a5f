"""Findings placed in the phantom (see :class:`~._build.Finding`).

Calculi are calcium oxalate ("stone" material) displacing soft tissue.  A staghorn calculus
casts the renal pelvis and at least two calyceal groups [Diri, World J Nephrol 2017]: here the
collecting system at its resting volume, shrunk to 85 %.  Ureteric stones sit at the three
physiological narrowings (pelvi-ureteric junction, pelvic brim, vesico-ureteric junction)
[Dyer 2004] or mid-ureter.  A cyst is a round non-enhancing space in the parenchyma.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from ._build import Finding
from ._lower_tract import LowerTract
from ._shapes import Primitive, ellipsoid

F64 = npt.NDArray[np.float64]
#: where along a ureter (fraction of its length from the UPJ) a site lies
URETER_SITE_FRACTION = {"upj": 0.02, "ureter_mid": 0.4, "pelvic_brim": 0.62, "vuj": 0.97}
KIDNEY_SITE_LONG_MM = {"upper_pole": 30.0, "interpolar": 0.0, "lower_pole": -32.0}
STAGHORN_SHRINK = 0.85


class Findings(LowerTract):
    def _finding_centre(self, f: object) -> F64:
        """Centre of a finding in build coordinates: its ``site`` resolved on this anatomy,
        else ``centre_mm`` (patient frame)."""
        assert isinstance(f, Finding)
        if f.site is None:
            return np.asarray(f.centre_mm, dtype=float) / self.scale
        if f.site == "pelvis":
            _centre, _rot = self._kidney_frames[f.side]
            return self.kidney_at(f.side, 22.0, 1.0, -6.0)
        if f.site in KIDNEY_SITE_LONG_MM:
            return self.kidney_at(f.side, -4.0, 0.0, KIDNEY_SITE_LONG_MM[f.site])
        if f.site in URETER_SITE_FRACTION:
            curve = self._ureter_curves[f.side][0]
            seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
            s = np.concatenate([[0.0], np.cumsum(seg)])
            target = URETER_SITE_FRACTION[f.site] * float(s[-1])
            out: F64 = np.array([np.interp(target, s, curve[:, k]) for k in range(3)])
            return out
        raise ValueError(f"unknown finding site {f.site!r}")

    def finding_centre_mm(self, f: Finding) -> tuple[float, float, float]:
        """Where a finding lies in the patient frame."""
        c = self._finding_centre(f) * self.scale
        return (float(c[0]), float(c[1]), float(c[2]))

    def _findings(self) -> list[Primitive]:
        prims: list[Primitive] = []
        for f in self.build.findings:
            if f.kind in ("pelvis_tumour", "bladder_tumour"):
                continue  # drawn with their (volume-dependent) urine spaces
            if f.kind == "staghorn":
                prims += self._staghorn(f.side)
                continue
            r = f.diameter_mm / 2.0 / self.scale
            c = self._finding_centre(f)
            if f.kind == "stone":
                prims.append(ellipsoid(c, (r, r * 0.8, r * 1.1), "stone",
                                       "soft_tissue", name="stone"))  # fmt: skip
            elif f.kind == "cyst":
                prims.append(ellipsoid(c, (r, r, r), "urine", "kidney", None,
                                       f"kidney_{f.side}", -1.0, name="cyst"))  # fmt: skip
            else:
                raise ValueError(f"unknown finding kind {f.kind!r}")
        return prims

    def _staghorn(self, side: str) -> list[Primitive]:
        cast = self._collecting_build(side, self.PELVIS_REFERENCE_ML * self.scale**3)
        return [
            replace(
                p,
                semi_axes=(
                    p.semi_axes[0] * STAGHORN_SHRINK,
                    p.semi_axes[1] * STAGHORN_SHRINK,
                    p.semi_axes[2],
                ),
                material="stone",
                displaces="soft_tissue",
                compartment=None,
                name="staghorn calculus",
            )
            for p in cast
            if p.iodine_scale > 0
        ]
