"""Body wall, skeleton, retroperitoneal fat and psoas, bowel gas."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._base import PhantomBase
from ._shapes import (
    Primitive,
    _axes_along,
    _catmull_rom,
    _shelled,
    _shelled_cyl,
    _tube,
    cylinder,
    ellipsoid,
    rot_x,
    rot_y,
    rot_z,
)


class Skeleton(PhantomBase):
    # -- parts ----------------------------------------------------------------------------------
    def _body(self) -> list[Primitive]:
        a, b = self.width_mm / 2.0, self.ap_mm / 2.0
        f = self.fat_mm
        z0, z1 = self.z(-520.0), self.z(420.0)
        top, bot = (0.0, 0.0, z1), (0.0, 0.0, z0)
        return [
            cylinder(bot, top, (a, b), "adipose", None, name="body", rotation=np.eye(3)),
            cylinder(
                bot,
                top,
                (a - f, b - 0.8 * f),
                "soft_tissue",
                "adipose",
                name="muscle wall",
                rotation=np.eye(3),
            ),
            # properitoneal fat stripe (the "flank stripe")
            cylinder(
                bot,
                top,
                (a - f - 12.0, b - 0.8 * f - 10.0),
                "adipose",
                "soft_tissue",
                name="properitoneal fat",
                rotation=np.eye(3),
            ),
            cylinder(
                bot,
                top,
                (a - f - 16.0, b - 0.8 * f - 13.0),
                "soft_tissue",
                "adipose",
                name="abdominal contents",
                rotation=np.eye(3),
            ),
        ]

    _LEVELS = (
        # name, z centre, half height, half width, half depth, transverse-process reach
        ("T11", 192.0, 11.0, 17.0, 14.0, 14.0),
        ("T12", 158.0, 12.0, 18.5, 15.0, 12.0),
        ("L1", 121.0, 13.0, 20.0, 16.0, 18.0),
        ("L2", 83.0, 13.5, 21.0, 16.5, 26.0),
        ("L3", 45.0, 14.0, 22.0, 17.0, 32.0),
        ("L4", 6.0, 14.0, 23.0, 17.0, 28.0),
        ("L5", -33.0, 13.0, 24.5, 17.0, 24.0),
    )

    def _spine(self) -> list[Primitive]:
        prims: list[Primitive] = []
        y0 = self.y_spine
        for name, zc, hh, a, b, tp in self._LEVELS:
            zc = self.z(zc) + float(self._rng.normal(0.0, 0.5))
            hh *= self.scale_z
            bot, top = (0.0, y0, zc - hh), (0.0, y0, zc + hh)
            prims += _shelled_cyl(bot, top, (a, b), 1.6, name=f"{name} body", rotation=np.eye(3))
            y_post = y0 - b
            # pedicles: short elliptic cylinders along y, seen end-on in an AP view
            for sx in (-1.0, 1.0):
                x = sx * (a - 6.0)
                prims += _shelled_cyl(
                    (x, y_post + 2.0, zc + 0.2 * hh),
                    (x, y_post - 13.0, zc + 0.2 * hh),
                    (4.5, 6.5),
                    1.6,
                    name=f"{name} pedicle",
                    rotation=np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
                )
                # transverse processes
                prims.append(
                    cylinder(
                        (sx * (a - 4.0), y_post - 12.0, zc + 0.1 * hh),
                        (sx * (a + tp), y_post - 14.0, zc - 0.05 * hh),
                        (4.0, 3.5),
                        "bone_trabecular",
                        "soft_tissue",
                        name=f"{name} transverse process",
                    )
                )
            # lamina + spinous process
            prims.append(
                ellipsoid(
                    (0.0, y_post - 17.0, zc - 2.0), (15.0, 5.0, hh * 0.9), "bone_trabecular",
                    "soft_tissue", name=f"{name} lamina",
                )
            )  # fmt: skip
            prims += _shelled(
                (0.0, y_post - 36.0, zc - 0.5 * hh),
                (4.0, 17.0, hh * 0.65),
                rot_x(-15.0),
                1.2,
                name=f"{name} spinous process",
            )
        self.landmarks["L1"] = (0.0, y0, self.z(121.0))
        self.landmarks["L4"] = (0.0, y0, self.z(6.0))
        return prims

    def _ribs(self) -> list[Primitive]:
        prims: list[Primitive] = []
        ax = self.width_mm / 2.0 - self.fat_mm - 14.0
        ay = self.ap_mm / 2.0 - 0.8 * self.fat_mm - 14.0
        for name, z_start, phi_end, drop in (
            ("rib 10", 236.0, 40.0, 95.0),
            ("rib 11", 200.0, -5.0, 80.0),
            ("rib 12", 165.0, -40.0, 50.0),
        ):
            for sx in (-1.0, 1.0):
                # transverse path: costovertebral joint → rib angle → along the body wall
                phis = np.radians(np.linspace(-62.0, phi_end, 6))
                wall = np.stack([sx * ax * np.cos(phis), ay * np.sin(phis)], axis=1)
                wall[:, 1] = np.maximum(wall[:, 1], self.y_spine - 40.0)
                xy = np.vstack([[sx * 20.0, self.y_spine - 10.0], [sx * 45.0, self.y_spine - 32.0],
                                wall])  # fmt: skip
                seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
                frac = np.concatenate([[0.0], np.cumsum(seg)]) / float(seg.sum())
                zz = self.z(z_start) - drop * self.scale_z * frac
                curve = _catmull_rom(np.column_stack([xy, zz]), 16.0)
                prims += _tube(curve, 5.5, "bone", "soft_tissue", name=name, overlap_mm=0.3)
                prims += _tube(curve, 4.0, "bone_trabecular", "bone", name=name, overlap_mm=0.3)
        return prims

    def _pelvis(self) -> list[Primitive]:
        prims: list[Primitive] = []
        z = self.z
        ys = self.y_spine
        y_sym = self.ap_mm / 2.0 - 0.8 * self.fat_mm - 22.0
        y_hip = ys + 35.0
        self.landmarks["symphysis"] = (0.0, y_sym, z(-178.0))
        # sacrum: a tilted plate (promontory anterior), trabecular with a cortical shell
        # sacrum: five tapering segments stacked along a tilted axis (promontory anterior),
        # with paired foramina; an inverted triangle in an AP view
        axis = rot_x(-30.0)  # rows: local x, y, z(axis, pointing cranial-anterior)
        top = np.array([0.0, ys + 2.0, z(-50.0)])
        seg_h = 11.0 * self.scale_z
        widths = np.linspace(50.0, 12.0, 9)
        for i, half_w in enumerate(widths):
            c0 = top - axis[2] * (seg_h * i)
            c1 = c0 - axis[2] * seg_h
            prims += _shelled_cyl(c0, c1, (float(half_w), 14.0 - 0.6 * i), 1.5, name="sacrum",
                                  rotation=axis)  # fmt: skip
            if i in (1, 3, 5, 7):
                for sx in (-1.0, 1.0):
                    fc = (c0 + c1) / 2.0 + axis[0] * sx * (half_w * 0.5)
                    prims.append(
                        cylinder(fc + axis[1] * 16.0, fc - axis[1] * 16.0, 4.0 - 0.5 * i,
                                 "soft_tissue", "bone_trabecular", name="sacral foramen")
                    )  # fmt: skip
        prims.append(
            ellipsoid((0.0, ys - 35.0, z(-140.0)), (10.0, 8.0, 22.0), "bone_trabecular",
                      "soft_tissue", rot_x(-50.0), name="coccyx")
        )  # fmt: skip
        for sx in (-1.0, 1.0):
            # iliac wing: thin plate, plane turned ~35° from coronal, shell + spongiosa
            rot = rot_z(sx * 38.0)
            prims.append(
                ellipsoid((sx * 95.0, ys + 14.0, z(-55.0)), (60.0, 4.5, 52.0), "bone_trabecular",
                          "soft_tissue", rot, name="iliac wing")
            )  # fmt: skip
            # iliac crest rim (thicker)
            crest = np.array(
                [
                    [sx * 45.0, ys - 25.0, z(-30.0)],
                    [sx * 85.0, ys - 12.0, z(-2.0)],
                    [sx * 122.0, ys + 20.0, z(-8.0)],
                    [sx * 138.0, ys + 55.0, z(-42.0)],
                    [sx * 128.0, ys + 80.0, z(-75.0)],
                ]
            )
            prims += _tube(_catmull_rom(crest, 12.0), 5.0, "bone", "soft_tissue", name="crest",
                           overlap_mm=0.3)  # fmt: skip
            # acetabulum / ilium body
            prims += _shelled((sx * 84.0, y_hip, z(-124.0)), (24.0, 22.0, 14.0),
                              rot_z(sx * 20.0), 2.5, name="acetabular roof")  # fmt: skip
            # femoral head, neck, trochanter, shaft
            head = np.array([sx * 92.0, y_hip + 5.0, z(-162.0)])
            prims += _shelled(head, (23.0, 23.0, 23.0), None, 2.0, name="femoral head")
            troch = np.array([sx * 138.0, y_hip - 5.0, z(-200.0)])
            prims += _shelled_cyl(head, troch, 14.0, 2.5, name="femoral neck")
            prims += _shelled(troch, (16.0, 16.0, 24.0), None, 2.0, name="trochanter")
            shaft_end = np.array([sx * 125.0, y_hip, z(-560.0)])
            prims += _shelled_cyl(troch + np.array([-sx * 8.0, 0, -10.0]), shaft_end, 14.0, 5.0,
                                  name="femoral shaft")  # fmt: skip
            # pubic rami, ischium
            sym = np.array([sx * 9.0, y_sym, z(-185.0)])
            ramus_end = sym + np.array([0.0, 0.0, 12.0])
            prims += _shelled_cyl((sx * 68.0, y_hip + 12.0, z(-160.0)), ramus_end, 8.5,
                                  2.0, name="superior ramus")  # fmt: skip
            tuber = np.array([sx * 62.0, y_hip - 10.0, z(-232.0)])
            prims += _shelled_cyl(
                sym - np.array([0.0, 0.0, 14.0]), tuber, 7.0, 2.0, name="inferior ramus"
            )
            prims += _shelled_cyl((sx * 74.0, y_hip - 5.0, z(-165.0)), tuber, 13.0, 2.5,
                                  name="ischium")  # fmt: skip
            prims += _shelled(sym, (8.0, 9.0, 19.0), None, 2.0, name="pubic body")
        # pelvic inlet ring (arcuate / iliopectineal lines): a tilted oval of cortical bone
        ring: list[npt.NDArray[np.float64]] = []
        prom = np.array([0.0, ys + 14.0, z(-52.0)])
        symtop = np.array([0.0, y_sym - 6.0, z(-166.0)])
        centre = (prom + symtop) / 2.0
        ap_axis = symtop - prom
        half_ap = float(np.linalg.norm(ap_axis)) / 2.0
        ap_dir = ap_axis / (2.0 * half_ap)
        for t in np.linspace(0.0, 2.0 * math.pi, 37):
            ring.append(
                centre
                + np.array([1.0, 0.0, 0.0]) * 62.0 * math.sin(t)
                - ap_dir * half_ap * math.cos(t)
            )
        prims += _tube(np.asarray(ring), 3.5, "bone", "soft_tissue", name="pelvic brim",
                       overlap_mm=0.2)  # fmt: skip
        return prims

    def _retroperitoneum(self) -> list[Primitive]:
        prims: list[Primitive] = []
        ys = self.y_spine
        extra = 0.6 * self.fat_mm
        for sx in (-1.0, 1.0):
            # psoas: from T12 (medial) to the pelvis (lateral), displacing the fat
            top = np.array([sx * 24.0, ys + 4.0, self.z(165.0)])
            bot = np.array([sx * 68.0, ys + 22.0, self.z(-110.0)])
            axis = _axes_along(bot - top)
            mid = (top + bot) / 2.0
            half = float(np.linalg.norm(bot - top)) / 2.0
            sheath = 5.0 + 0.3 * extra
            prims.append(
                ellipsoid(mid, (21.0 + sheath, 23.0 + sheath, half + sheath), "adipose",
                          "soft_tissue", axis, name="psoas fat")
            )  # fmt: skip
            prims.append(
                ellipsoid(mid, (21.0, 23.0, half), "soft_tissue", "adipose", axis, name="psoas")
            )
        return prims

    def _bowel_gas(self) -> list[Primitive]:
        rng = self._rng
        z = self.z
        ya = self.ap_mm / 2.0 - 0.8 * self.fat_mm - 40.0  # anterior abdomen (gas rises supine)
        prims: list[Primitive] = []
        # (x range, z range, y, count, size range)
        regions = (
            ((-105.0, -85.0), (-60.0, 70.0), ya - 35.0, 4, (10.0, 16.0)),  # ascending colon
            ((-80.0, 90.0), (55.0, 95.0), ya - 10.0, 5, (10.0, 17.0)),  # transverse colon
            ((95.0, 112.0), (-40.0, 120.0), ya - 45.0, 3, (8.0, 13.0)),  # descending colon
            ((-25.0, 30.0), (-120.0, -85.0), ya - 70.0, 3, (10.0, 16.0)),  # sigmoid / rectum
            ((-60.0, 60.0), (-60.0, 40.0), ya - 20.0, 4, (5.0, 9.0)),  # small bowel
        )
        for (x0, x1), (z0, z1), y, n, (s0, s1) in regions:
            for _ in range(n):
                if rng.random() < 0.25:
                    continue
                c = (rng.uniform(x0, x1), y + rng.normal(0, 8.0), z(rng.uniform(z0, z1)))
                s = rng.uniform(s0, s1)
                semi = (
                    s * rng.uniform(0.8, 1.4),
                    s * rng.uniform(0.5, 0.8),
                    s * rng.uniform(0.7, 1.3),
                )
                prims.append(ellipsoid(c, semi, "air", "soft_tissue", rot_y(rng.uniform(0, 180)),
                                       name="bowel gas"))  # fmt: skip
        # faecal mottling: small bubbles in the colon frame
        for _ in range(30):
            which = rng.integers(0, 3)
            if which == 0:
                c = (rng.uniform(-110.0, -80.0), ya - 40.0, z(rng.uniform(-60.0, 60.0)))
            elif which == 1:
                c = (rng.uniform(-80.0, 90.0), ya - 15.0, z(rng.uniform(60.0, 95.0)))
            else:
                c = (rng.uniform(92.0, 115.0), ya - 50.0, z(rng.uniform(-40.0, 110.0)))
            r = rng.uniform(1.5, 4.0)
            prims.append(ellipsoid(c, (r, r, r), "air", "soft_tissue", name="stool gas"))
        return prims
