"""Analytic solids of the phantom and the small vector helpers that place them."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]
IDENTITY: Mat3 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


@dataclass(frozen=True)
class Primitive:
    """A solid: ``kind`` "ellipsoid" (semi-axes a, b, c) or "cylinder" (elliptic cross-section
    radii a, b in the local x–y plane, half-length c along local z).  ``rotation`` rows are the
    local x, y, z axes expressed in the patient frame."""

    kind: str
    centre: Vec3
    semi_axes: Vec3
    rotation: Mat3 = IDENTITY
    material: str | None = "soft_tissue"
    displaces: str | None = None
    compartment: str | None = None
    iodine_scale: float = 1.0
    name: str = ""
    arc_mm: float | None = None  # position along a ureter (peristalsis), mm from the UPJ

    def local_matrix(self) -> npt.NDArray[np.float64]:
        """M such that local_unit = M @ (p − centre)."""
        r = np.asarray(self.rotation, dtype=float)
        out: npt.NDArray[np.float64] = r / np.asarray(self.semi_axes, dtype=float)[:, None]
        return out

    def corners(self) -> npt.NDArray[np.float64]:
        """The 8 corners of the local bounding box, patient frame (8×3)."""
        r = np.asarray(self.rotation, dtype=float)
        s = np.asarray(self.semi_axes, dtype=float)
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
        out: npt.NDArray[np.float64] = np.asarray(self.centre, dtype=float) + (signs * s) @ r
        return out


# -- small vector helpers -----------------------------------------------------------------------
def _unit(v: npt.ArrayLike) -> npt.NDArray[np.float64]:
    a = np.asarray(v, dtype=float)
    return a / float(np.linalg.norm(a))


def _mat(rows: npt.NDArray[np.float64]) -> Mat3:
    r = [tuple(float(x) for x in row) for row in rows]
    return (
        (r[0][0], r[0][1], r[0][2]),
        (r[1][0], r[1][1], r[1][2]),
        (r[2][0], r[2][1], r[2][2]),
    )


def _v(p: npt.ArrayLike) -> Vec3:
    a = np.asarray(p, dtype=float)
    return (float(a[0]), float(a[1]), float(a[2]))


def rot_x(deg: float) -> npt.NDArray[np.float64]:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg: float) -> npt.NDArray[np.float64]:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(deg: float) -> npt.NDArray[np.float64]:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _axes_along(direction: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Rows: two unit vectors perpendicular to ``direction`` and ``direction`` itself."""
    d = _unit(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _unit(np.cross(helper, d))
    e2 = np.cross(d, e1)
    return np.stack([e1, e2, d])


def ellipsoid(
    centre: npt.ArrayLike,
    semi: Vec3,
    material: str | None = "soft_tissue",
    displaces: str | None = None,
    rotation: npt.NDArray[np.float64] | None = None,
    compartment: str | None = None,
    iodine_scale: float = 1.0,
    name: str = "",
) -> Primitive:
    rot = IDENTITY if rotation is None else _mat(rotation)
    return Primitive(
        "ellipsoid", _v(centre), semi, rot, material, displaces, compartment, iodine_scale, name
    )


def cylinder(
    p0: npt.ArrayLike,
    p1: npt.ArrayLike,
    radius: float | tuple[float, float],
    material: str | None = "soft_tissue",
    displaces: str | None = None,
    compartment: str | None = None,
    iodine_scale: float = 1.0,
    name: str = "",
    arc_mm: float | None = None,
    rotation: npt.NDArray[np.float64] | None = None,
) -> Primitive:
    """A finite (flat-ended) cylinder from p0 to p1; elliptic if radius is a pair."""
    a0 = np.asarray(p0, dtype=float)
    a1 = np.asarray(p1, dtype=float)
    length = float(np.linalg.norm(a1 - a0))
    ra, rb = (radius, radius) if isinstance(radius, int | float) else radius
    rot = _axes_along(a1 - a0) if rotation is None else rotation
    return Primitive(
        "cylinder",
        _v((a0 + a1) / 2.0),
        (float(ra), float(rb), max(length / 2.0, 1e-3)),
        _mat(rot),
        material,
        displaces,
        compartment,
        iodine_scale,
        name,
        arc_mm,
    )


def _catmull_rom(points: npt.NDArray[np.float64], step_mm: float) -> npt.NDArray[np.float64]:
    """A smooth curve through ``points`` sampled roughly every ``step_mm``."""
    p = np.vstack([points[0], points, points[-1]])
    out = [points[0]]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        n = max(2, math.ceil(float(np.linalg.norm(p2 - p1)) / step_mm))
        for t in np.linspace(0.0, 1.0, n + 1)[1:]:
            t2, t3 = t * t, t * t * t
            out.append(
                0.5
                * (
                    2 * p1
                    + (-p0 + p2) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
                )
            )
    return np.asarray(out)


def _tube(
    points: npt.NDArray[np.float64],
    radius: float,
    material: str | None,
    displaces: str | None = None,
    compartment: str | None = None,
    name: str = "",
    with_arc: bool = False,
    overlap_mm: float = 0.0,
) -> list[Primitive]:
    prims: list[Primitive] = []
    s = 0.0
    for a, b in itertools.pairwise(points):
        seg = float(np.linalg.norm(b - a))
        d = (b - a) / max(seg, 1e-9)
        prims.append(
            cylinder(
                a - d * overlap_mm,
                b + d * overlap_mm,
                radius,
                material,
                displaces,
                compartment,
                name=name,
                arc_mm=(s + seg / 2.0) if with_arc else None,
            )
        )
        s += seg
    return prims


def _shelled(
    centre: npt.ArrayLike,
    semi: Vec3,
    rotation: npt.NDArray[np.float64] | None,
    shell_mm: float,
    displaces: str = "soft_tissue",
    name: str = "",
) -> list[Primitive]:
    """A cortical-bone ellipsoid with a trabecular core."""
    inner = (
        max(semi[0] - shell_mm, 0.5),
        max(semi[1] - shell_mm, 0.5),
        max(semi[2] - shell_mm, 0.5),
    )
    return [
        ellipsoid(centre, semi, "bone", displaces, rotation, name=name),
        ellipsoid(centre, inner, "bone_trabecular", "bone", rotation, name=name),
    ]


def _shelled_cyl(
    p0: npt.ArrayLike,
    p1: npt.ArrayLike,
    radius: float | tuple[float, float],
    shell_mm: float,
    displaces: str = "soft_tissue",
    name: str = "",
    rotation: npt.NDArray[np.float64] | None = None,
) -> list[Primitive]:
    ra, rb = (radius, radius) if isinstance(radius, int | float) else radius
    a0, a1 = np.asarray(p0, float), np.asarray(p1, float)
    d = _unit(a1 - a0)
    return [
        cylinder(a0, a1, (ra, rb), "bone", displaces, name=name, rotation=rotation),
        cylinder(
            a0 + d * shell_mm,
            a1 - d * shell_mm,
            (max(ra - shell_mm, 0.5), max(rb - shell_mm, 0.5)),
            "bone_trabecular",
            "bone",
            name=name,
            rotation=rotation,
        ),
    ]
