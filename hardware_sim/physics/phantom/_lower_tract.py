"""Ureters, bladder, urethra and the great vessels.

The urethra is an iodine-only tube (compartment ``urethra``) that carries contrast only while
the patient voids (:meth:`~hardware_sim.physics.kinetics.ContrastKinetics.start_voiding`):
female ≈ 4 cm, running antero-inferiorly from the bladder neck behind the symphysis; male
≈ 20 cm — prostatic (3 cm, widest), membranous (1.5 cm, narrowest), bulbar and penile —
[Standring, Gray's Anatomy 41st ed.; Berrocal, Radiographics 2002 "Anatomy and imaging of
the male urethra"; voiding calibre 6–8 mm female, bulbar 10 mm].
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

from ._collecting import Collecting
from ._shapes import Primitive, _catmull_rom, _tube, _v, cylinder, ellipsoid

F64 = npt.NDArray[np.float64]
URETER_RADIUS_MM = 2.6


class LowerTract(Collecting):
    BLADDER_REFERENCE_ML = 250.0

    def _ureter_controls(self, side: str, upj: F64) -> F64:
        sx = 1.0 if side == "left" else -1.0
        ys = self.y_spine
        z = self.z
        y_bl = self._build_landmarks_now()["symphysis"][1] - 50.0
        tail = [
            [sx * 58.0, ys + 15.0, z(-100.0)],
            [sx * 48.0, y_bl - 22.0, z(-142.0)],
            [sx * 20.0, y_bl - 10.0, z(-156.0)],
        ]
        variant = self.kidney_variant(side)
        if variant == "pelvic":  # short ureter straight down to the bladder
            head = [upj, upj + np.array([-sx * 4.0, -2.0, -18.0])]
            return np.array([*head, *tail[1:]])
        if variant == "horseshoe":  # anterior course, over the isthmus
            head = [upj, upj + np.array([sx * 6.0, 14.0, -24.0])]
            return np.array([*head, [sx * 44.0, ys + 30.0, z(-45.0)], *tail])
        return np.array(
            [
                upj,
                upj + np.array([-sx * 6.0, 4.0, -22.0]),
                [sx * 44.0, ys + 28.0, z(45.0)],
                [sx * 41.0, ys + 30.0, z(5.0)],
                [sx * 44.0, ys + 30.0, z(-45.0)],
                *tail,
            ]
        )

    def _build_landmarks_now(self) -> dict[str, tuple[float, float, float]]:
        """Landmarks in build coordinates (during the build they are :attr:`landmarks`)."""
        return getattr(self, "_build_landmarks", None) or self.landmarks

    def _ureter(self, side: str) -> list[Primitive]:
        sx = 1.0 if side == "left" else -1.0
        upj = np.asarray(self.landmarks[f"upj_{side}"])
        ctrl = self._ureter_controls(side, upj)
        curve = _catmull_rom(ctrl, 10.0)
        self._ureter_curves[side] = [curve]
        self.landmarks[f"ureter_mid_{side}"] = _v(ctrl[min(3, len(ctrl) - 2)])
        seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
        self.ureter_length_mm = float(seg.sum())
        self.ureter_tube_ml = math.pi * URETER_RADIUS_MM**2 * self.ureter_length_mm / 1000.0
        prims = _tube(curve, URETER_RADIUS_MM, None, None, f"ureter_{side}", name="ureter",
                      with_arc=True, overlap_mm=0.0)  # fmt: skip
        if f"upj_upper_{side}" in self.landmarks:
            # complete duplication: the upper moiety's ureter runs medial to the lower one's
            # and inserts lower and more medially (Weigert–Meyer rule)
            up = np.asarray(self.landmarks[f"upj_upper_{side}"])
            shift = np.array([-sx * 7.0, 2.0, 0.0])
            ctrl2 = np.vstack([up, up + np.array([-sx * 4.0, 3.0, -20.0]), ctrl[2:-1] + shift,
                               ctrl[-1] + np.array([-sx * 8.0, 0.0, -8.0])])  # fmt: skip
            curve2 = _catmull_rom(ctrl2, 10.0)
            self._ureter_curves[side].append(curve2)
            prims += _tube(curve2, URETER_RADIUS_MM, None, None, f"ureter_{side}",
                           name="upper-moiety ureter", with_arc=True, overlap_mm=0.0)  # fmt: skip
        return prims

    def _bladder_build(self, volume_ml: float) -> list[Primitive]:
        v = max(volume_ml, 1.0) / self.scale**3
        k = (v / self.BLADDER_REFERENCE_ML) ** (1.0 / 3.0)
        # 250 mL reference: 4/3·π·46·36·36 mm³ ≈ 250 mL
        a, b, c = 46.0 * k, 36.0 * k, 36.0 * k
        sym = self._build_landmarks_now()["symphysis"]
        z_base = self.z(-165.0)
        centre = (0.0, sym[1] - 18.0 - b, z_base + c)
        prims = [ellipsoid(centre, (a, b, c), None, None, None, "bladder", 1.0, name="bladder")]
        for f in self.findings_of("bladder_tumour"):
            sx = 1.0 if f.side == "left" else -1.0
            r = f.diameter_mm / 2.0 / self.scale
            x = sx * max(a - r - 2.0, 0.0)
            prims.append(ellipsoid((x, centre[1], centre[2]), (r, r, r), None, None, None,
                                   "bladder", -1.0, name="bladder tumour"))  # fmt: skip
        return prims

    def _urethra(self) -> list[Primitive]:
        sym = self.landmarks["symphysis"]
        neck = np.array([0.0, sym[1] - 18.0 - 8.0, self.z(-165.0)])
        if self.build.sex == "M":
            steps = [
                (0.0, 2.0, -30.0),  # prostatic
                (0.0, 8.0, -45.0),  # membranous
                (0.0, 30.0, -62.0),  # bulbar, curving forward under the symphysis
                (0.0, 45.0, -90.0),
                (0.0, 50.0, -190.0),  # penile, along the thighs
            ]
            radii: tuple[float, ...] = (3.5, 2.0, 5.0, 4.0, 3.5)
        else:
            steps = [(0.0, 8.0, -20.0), (0.0, 14.0, -38.0)]
            radii = (3.5, 3.0)
        pts = np.vstack([neck, neck + np.asarray(steps)])
        self.landmarks["urethra_meatus"] = _v(pts[-1])
        prims: list[Primitive] = []
        for (p0, p1), r in zip(itertools.pairwise(pts), radii, strict=True):
            prims.append(cylinder(p0, p1, r, None, None, "urethra", name="urethra"))
        return prims

    def _vessels(self) -> list[Primitive]:
        ys = self.y_spine
        hct_scale = 0.55  # blood iodine = plasma × (1 − Hct)
        z = self.z
        y_v = ys + 17.0 + 14.0
        bif = np.array([8.0, y_v, z(8.0)])
        prims = [
            cylinder((10.0, y_v, z(260.0)), bif, 10.5, None, None, "plasma", hct_scale,
                     name="aorta"),
            cylinder((-24.0, y_v - 2.0, z(260.0)), (-14.0, y_v - 4.0, z(-10.0)), (12.0, 9.0),
                     None, None, "plasma", hct_scale, name="IVC"),
        ]  # fmt: skip
        for sx in (-1.0, 1.0):
            prims.append(
                cylinder(bif, (sx * 52.0, y_v - 12.0, z(-70.0)), 5.5, None, None, "plasma",
                         hct_scale, name="common iliac artery")
            )  # fmt: skip
        for side in ("left", "right"):
            kc = np.asarray(self.landmarks[f"kidney_{side}"])
            origin = (8.0, y_v, kc[2] + 5.0)
            if self.kidney_variant(side) == "pelvic":  # supplied from the iliac artery
                sx = 1.0 if side == "left" else -1.0
                origin = (sx * 30.0, y_v - 5.0, z(-30.0))
            prims.append(
                cylinder(origin, kc + np.array([-np.sign(kc[0]) * 25.0, 8.0, 5.0]),
                         3.0, None, None, "plasma", hct_scale, name="renal artery")
            )  # fmt: skip
        return prims
