"""Kidneys, collecting systems, ureters, bladder and the great vessels."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._base import PhantomBase
from ._shapes import Primitive, _axes_along, _catmull_rom, _tube, _unit, _v, cylinder, ellipsoid


class Urinary(PhantomBase):
    BLADDER_REFERENCE_ML = 250.0
    PELVIS_REFERENCE_ML = 7.0

    def _kidney_frame(self, side: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        sx = 1.0 if side == "left" else -1.0
        zc = self.z(112.0 if side == "left" else 90.0) + float(self._rng.normal(0.0, 3.0))
        centre = np.array([sx * 82.0, self.y_spine + 8.0, zc])
        tilt = math.radians(16.0)
        e_long = np.array([-sx * math.sin(tilt), 0.0, math.cos(tilt)])
        m0 = np.array([-sx, 0.0, 0.0])  # toward the midline
        m0 = _unit(m0 - np.dot(m0, e_long) * e_long)
        # turn the hilum 30° anteriorly about the long axis
        ang = math.radians(30.0) * sx
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
        centre, rot = self._kidney_frame(side)
        self._kidney_frames[side] = (centre, rot)
        kid, pel = f"kidney_{side}", f"pelvis_{side}"

        def at(m: float, w: float, u: float) -> npt.NDArray[np.float64]:
            out: npt.NDArray[np.float64] = centre + rot[0] * m + rot[1] * w + rot[2] * u
            return out

        self.landmarks[kid] = _v(centre)
        self.landmarks[f"kidney_lateral_{side}"] = _v(at(-16.0, 0.0, 0.0))
        self.landmarks[f"kidney_upper_{side}"] = _v(at(-4.0, 0.0, 36.0))
        self.landmarks[pel] = _v(at(22.0, 1.0, -6.0))
        self.landmarks[f"upj_{side}"] = _v(at(27.0, 1.0, -18.0))
        fat = 0.4 * self.fat_mm
        return [
            ellipsoid(at(-8.0, 0, 0), (36.0 + fat, 28.0 + fat, 68.0 + fat), "adipose",
                      "soft_tissue", rot, name="perirenal fat"),
            ellipsoid(centre, (27.0, 18.0, 55.0), "kidney", "adipose", rot, kid, 1.0,
                      name="kidney"),
            # renal sinus fat: no nephrogram there
            ellipsoid(at(13.0, 0, -2.0), (13.0, 9.0, 32.0), "adipose", "kidney", rot, kid, -1.0,
                      name="renal sinus"),
        ]  # fmt: skip

    def collecting_system(self, side: str, volume_ml: float | None = None) -> list[Primitive]:
        """Urine spaces of one pelvicalyceal system (iodine-only primitives, compartment
        ``pelvis_<side>``), sized for ``volume_ml``: radii scale with (V/7 mL)^(1/3) (0.7–1.8);
        distended systems (V > 15 mL) lose the papillary impressions (blunted calyces)."""
        centre, rot = self._kidney_frames[side]
        pel = f"pelvis_{side}"
        v = self.PELVIS_REFERENCE_ML if volume_ml is None else max(volume_ml, 0.1)
        k = float(np.clip((v / self.PELVIS_REFERENCE_ML) ** (1.0 / 3.0), 0.7, 1.8))

        def at(m: float, w: float, u: float) -> npt.NDArray[np.float64]:
            out: npt.NDArray[np.float64] = centre + rot[0] * m + rot[1] * w + rot[2] * u
            return out

        pelvis_c = at(20.0 + 2.0 * k, 1.0, -6.0)
        prims = [
            ellipsoid(pelvis_c, (11.0 * k, 5.5 * k, 14.0 * k), None, None, rot, pel, 1.0,
                      name="renal pelvis"),
        ]  # fmt: skip
        junction_upper = at(15.0, 0.0, 16.0)
        junction_lower = at(15.0, 0.0, -24.0)
        for j0 in (junction_upper, junction_lower):
            prims.append(cylinder(pelvis_c, j0, 3.0 * k, None, None, pel, name="major calyx"))
        # minor calyces: cups around the sinus, concave toward the papillae
        angles = (5.0, 32.0, 58.0, 78.0, 100.0, 122.0, 148.0, 175.0)
        for i, a_deg in enumerate(angles):
            a = math.radians(a_deg)
            u = 38.0 * math.cos(a)
            mm = 11.0 - 21.0 * math.sin(a)
            w = (5.0 if i % 2 else -5.0) if 60 < a_deg < 125 else 0.0
            cpt = at(mm, w, u)
            radial = _unit(cpt - at(13.0, 0.0, -2.0))
            neck = cpt - radial * 8.0
            hub = junction_upper if a_deg < 70 else junction_lower if a_deg > 110 else pelvis_c
            prims.append(cylinder(hub, neck, 1.8 * k, None, None, pel, name="infundibulum"))
            cup_rot = _axes_along(radial)
            prims.append(ellipsoid(cpt, (5.0 * k, 5.0 * k, 4.5 * k), None, None, cup_rot, pel,
                                   1.0, name="calyx"))  # fmt: skip
            if v < 15.0:
                prims.append(ellipsoid(cpt + radial * 4.0 * k, (3.4 * k, 3.4 * k, 3.4 * k), None,
                                       None, cup_rot, pel, -1.0, name="papilla"))  # fmt: skip
        return prims

    def _ureter(self, side: str) -> list[Primitive]:
        sx = 1.0 if side == "left" else -1.0
        ys = self.y_spine
        z = self.z
        upj = np.asarray(self.landmarks[f"upj_{side}"])
        y_bl = self.landmarks["symphysis"][1] - 50.0
        ctrl = np.array(
            [
                upj,
                upj + np.array([-sx * 6.0, 4.0, -22.0]),
                [sx * 44.0, ys + 28.0, z(45.0)],
                [sx * 41.0, ys + 30.0, z(5.0)],
                [sx * 44.0, ys + 30.0, z(-45.0)],
                [sx * 58.0, ys + 15.0, z(-100.0)],
                [sx * 48.0, y_bl - 22.0, z(-142.0)],
                [sx * 20.0, y_bl - 10.0, z(-156.0)],
            ]
        )
        curve = _catmull_rom(ctrl, 10.0)
        self.landmarks[f"ureter_mid_{side}"] = _v(ctrl[3])
        seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
        self.ureter_length_mm = float(seg.sum())
        self.ureter_tube_ml = math.pi * 2.6**2 * self.ureter_length_mm / 1000.0
        return _tube(curve, 2.6, None, None, f"ureter_{side}", name="ureter", with_arc=True,
                     overlap_mm=0.0)  # fmt: skip

    def bladder_primitive(self, volume_ml: float) -> Primitive:
        """The bladder urine for a given volume: the base stays behind the symphysis, the dome
        rises as it fills (semi-axes ∝ volume^(1/3))."""
        v = max(volume_ml, 1.0)
        k = (v / self.BLADDER_REFERENCE_ML) ** (1.0 / 3.0)
        # 250 mL reference: 4/3·π·46·36·36 mm³ ≈ 250 mL
        a, b, c = 46.0 * k, 36.0 * k, 36.0 * k
        sym = self.landmarks["symphysis"]
        z_base = self.z(-165.0)
        centre = (0.0, sym[1] - 18.0 - b, z_base + c)
        return ellipsoid(centre, (a, b, c), None, None, None, "bladder", 1.0, name="bladder")

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
            prims.append(
                cylinder((8.0, y_v, kc[2] + 5.0), kc + np.array([-np.sign(kc[0]) * 25.0, 8.0, 5.0]),
                         3.0, None, None, "plasma", hct_scale, name="renal artery")
            )  # fmt: skip
        return prims
