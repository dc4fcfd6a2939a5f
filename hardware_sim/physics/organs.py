"""Abdominal anatomy beyond the urinary tract: liver, spleen, visceral fat, a colon with haustra
and a seeded stool/gas pattern, small-bowel gas, a waist, and less cartoon-like vertebral
bodies and iliac crests (see docs/anatomy.md).

Everything is built from the phantom's own analytic primitives (ellipsoids, finite elliptic
cylinders) so the projector, the fast synthesis and :meth:`Phantom.voxelize` need nothing new;
the texture that primitives cannot give (soft-tissue power-law noise, trabecular bone) is a
per-view path-length modulation in :mod:`.texture`.

Entry point: :func:`add_abdominal_anatomy` (one call in :class:`~.phantom.Phantom`).  Its
random choices come from their own stream, ``default_rng([build.seed, ANATOMY_STREAM])``, so
the colon pattern is fixed by the patient's seed and independent of how many draws the rest of
the phantom makes.  Sizes are for the 175-cm, 75-kg, 22-cm reference build and scale with the
body: x and y with the abdominal contents' width and depth, z with height (``Phantom.z``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .phantom import Primitive, cylinder, ellipsoid

if TYPE_CHECKING:
    from .phantom import Phantom

F64 = npt.NDArray[np.float64]

ANATOMY_STREAM = 0xA7A  # second key of the anatomy's random stream
REFERENCE_WIDTH_MM = 220.0 * 1.45  # abdominal width of the reference build
REFERENCE_AP_MM = 220.0
VERTEBRAL_BODY = re.compile(r"^[TL]\d+ body$")
BODY_LAYERS = ("body", "muscle wall", "properitoneal fat", "abdominal contents")
LIVER_EXTRA_PLASMA = 0.12  # hepatic blood volume ≈ 0.27 mL/mL × (1 − Hct) − the tissue default
SPLEEN_EXTRA_PLASMA = 0.14
HAUSTRAL_SPACING_MM = 24.0
# colon contents: (gas-filled, gas cap over stool, stool with bubbles) per region
COLON_STATES = ("gas", "mixed", "stool")
COLON_REGIONS: dict[str, tuple[float, float, float]] = {
    "ascending": (0.10, 0.30, 0.60),  # in front of / beside the kidneys: mostly stool
    "transverse": (0.50, 0.30, 0.20),  # most anterior: gas collects there supine
    "descending": (0.15, 0.25, 0.60),
    "sigmoid": (0.40, 0.30, 0.30),
    "rectum": (0.50, 0.20, 0.30),
}


def contents_half_axes(ph: Phantom) -> tuple[float, float]:
    """Half width and half AP depth (mm) of the abdominal contents: inside the subcutaneous
    fat, the muscle wall and the properitoneal fat (as :meth:`Phantom._body` lays them)."""
    return ph.width_mm / 2.0 - ph.fat_mm - 16.0, ph.ap_mm / 2.0 - 0.8 * ph.fat_mm - 13.0


REFERENCE_FAT_MM = 8.0 + 3.0 * (75.0 / 1.75**2 - 22.0)  # as Phantom for the reference build
REFERENCE_CONTENTS = (
    REFERENCE_WIDTH_MM / 2.0 - REFERENCE_FAT_MM - 16.0,
    REFERENCE_AP_MM / 2.0 - 0.8 * REFERENCE_FAT_MM - 13.0,
)


class _Scale:
    """Reference-build millimetres → this patient: x and y by the abdominal contents' width
    and depth (organs live inside them; the wall and fat around them do not scale), z by
    height."""

    def __init__(self, ph: Phantom) -> None:
        self.ph = ph
        a, b = contents_half_axes(ph)
        self.x = a / REFERENCE_CONTENTS[0]
        self.y = b / REFERENCE_CONTENTS[1]
        self.k = float((self.x * self.y * ph.scale_z) ** (1.0 / 3.0))  # organ size

    def p(self, x: float, y: float, z: float) -> F64:
        return np.array([x * self.x, y, self.ph.z(z)])

    def semi(self, a: float, b: float, c: float) -> tuple[float, float, float]:
        return (a * self.x, b * self.y, c * self.ph.scale_z)


def add_abdominal_anatomy(phantom: Phantom, prims: Sequence[Primitive]) -> list[Primitive]:
    """The phantom's primitives with the anatomy of this module: the body layers stacked with
    a waist, liver, spleen and visceral fat after them (so that :meth:`Phantom.voxelize`, which
    paints in order, lets later structures overwrite them), waisted vertebral bodies, shelled
    iliac crests, and the colon and small-bowel gas in place of the old random gas
    bubbles ("bowel gas", "stool gas")."""
    rng = np.random.default_rng([phantom.build.seed, ANATOMY_STREAM])
    s = _Scale(phantom)
    out: list[Primitive] = []
    layers = [p for p in prims if p.name in BODY_LAYERS]
    for p in prims:
        if p.name in ("bowel gas", "stool gas"):
            continue
        if p.name == "body":
            out += waisted_body(phantom, layers)
            out += solid_organs(phantom, s)
            continue
        if p.name in BODY_LAYERS:
            continue
        if VERTEBRAL_BODY.match(p.name) and p.material == "bone":
            out += waisted_vertebra(p)
            continue
        if VERTEBRAL_BODY.match(p.name):
            continue  # its trabecular core: rebuilt with the shell above
        if p.name == "crest":
            continue  # rebuilt below, per side
        out.append(p)
    out += iliac_crests([p for p in prims if p.name == "crest"])
    out += colon(phantom, s, rng)
    out += small_bowel_gas(phantom, s, rng)
    return out


# -- body outline -------------------------------------------------------------------------------
def waist_fraction(phantom: Phantom, z_mm: float) -> float:
    """Fractional narrowing of the torso's width at height ``z_mm``: a Gaussian dip centred
    between the lower ribs and the iliac crest (L2), 5 % deep at BMI 22, shallower with more
    fat (an obese abdomen has no waist), < 0.2 % at the iliac crest (which stays inside the
    muscle wall)."""
    depth = float(np.clip(0.05 - 0.0025 * (phantom.bmi - 22.0), 0.0, 0.06))
    zc, sigma = phantom.z(70.0), phantom.z(60.0)
    return depth * math.exp(-(((z_mm - zc) / sigma) ** 2))


def waisted_body(phantom: Phantom, layers: Sequence[Primitive]) -> list[Primitive]:
    """The four body layers (elliptic cylinders along z) cut into slabs whose lateral radii
    follow :func:`waist_fraction`; every layer loses the same millimetres, so the fat and
    muscle thicknesses stay.  The AP depth is untouched (the table geometry uses it)."""
    if not layers:
        return []
    outer = next(p for p in layers if p.name == "body")
    z0, z1 = outer.centre[2] - outer.semi_axes[2], outer.centre[2] + outer.semi_axes[2]
    step = phantom.z(20.0)
    inner = np.arange(phantom.z(-110.0), phantom.z(190.0) + 0.5 * step, step)
    edges = [z0, *[float(z) for z in inner if z0 < z < z1], z1]
    a_out = outer.semi_axes[0]
    out: list[Primitive] = []
    for lo, hi in itertools.pairwise(edges):
        cut = a_out * waist_fraction(phantom, 0.5 * (lo + hi))
        for p in layers:
            a, b = p.semi_axes[0] - cut, p.semi_axes[1]
            out.append(
                cylinder(
                    (p.centre[0], p.centre[1], lo),
                    (p.centre[0], p.centre[1], hi),
                    (a, b),
                    p.material,
                    p.displaces,
                    name=p.name,
                    rotation=np.eye(3),
                )
            )
    return out


# -- solid organs -------------------------------------------------------------------------------
def _tilt_y(deg: float) -> F64:
    """Rows: local axes with local x tipped ``deg`` toward −z at the patient's right (−x)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def solid_organs(phantom: Phantom, s: _Scale) -> list[Primitive]:
    """Liver (right upper quadrant: right lobe under the diaphragm, its tip tipped down
    laterally, the left lobe across the midline anteriorly), spleen (left upper quadrant,
    posterolateral, above the left kidney, long axis along the 10th rib) and the visceral
    (mesenteric/omental) fat below them, whose AP thickness follows BMI.

    Liver and spleen are soft tissue in soft tissue (unenhanced liver ≈ muscle at these
    energies) carrying extra plasma iodine for their blood volume; what outlines them on a
    plain film is the fat and gas around them."""
    k = s.k
    fat_k = float(np.clip((phantom.bmi - 17.0) / 7.5, 0.25, 2.0))
    liver_c = s.p(-58.0, 0.1 * phantom.ap_mm, 198.0)
    left_c = s.p(22.0, 0.2 * phantom.ap_mm, 222.0)
    spleen_c = s.p(100.0, phantom.y_spine + 22.0 * s.y, 178.0)
    fat_c = s.p(0.0, 0.025 * phantom.ap_mm, -10.0)
    sm = s.semi
    phantom.landmarks["liver"] = (float(liver_c[0]), float(liver_c[1]), float(liver_c[2]))
    phantom.landmarks["spleen"] = (float(spleen_c[0]), float(spleen_c[1]), float(spleen_c[2]))

    def organ(
        c: F64, semi: tuple[float, float, float], rot: F64, extra: float, name: str
    ) -> Primitive:
        sem = (semi[0] * k / s.x, semi[1] * k / s.y, semi[2] * k / phantom.scale_z)
        return ellipsoid(c, sm(*sem), "soft_tissue", "soft_tissue", rot, "plasma", extra, name)

    return [
        organ(liver_c, (70.0, 66.0, 76.0), _tilt_y(22.0), LIVER_EXTRA_PLASMA, "liver"),
        organ(left_c, (48.0, 28.0, 36.0), _tilt_y(-12.0), LIVER_EXTRA_PLASMA, "liver"),
        organ(spleen_c, (22.0, 34.0, 58.0), _tilt_y(40.0), SPLEEN_EXTRA_PLASMA, "spleen"),
        ellipsoid(fat_c, sm(82.0, 20.0 * fat_k, 92.0), "adipose", "soft_tissue", None,
                  name="visceral fat"),
    ]  # fmt: skip


# -- bones --------------------------------------------------------------------------------------
def waisted_vertebra(body: Primitive, slices: int = 7, shell_mm: float = 1.6) -> list[Primitive]:
    """A vertebral body (a cortical cylinder along z, as the phantom builds it) rebuilt as
    stacked slices whose radii dip 14 % (width) and 6 % (depth) at mid-height: concave sides
    and slightly flared end plates, as a lumbar body looks in an AP film.  Each slice is a
    cortical shell with a trabecular core; only the top and bottom slices have end plates."""
    (cx, cy, cz), (a, b, hh) = body.centre, body.semi_axes
    edges = np.linspace(cz - hh, cz + hh, slices + 1)
    out: list[Primitive] = []
    for i in range(slices):
        lo, hi = float(edges[i]), float(edges[i + 1])
        t = (0.5 * (lo + hi) - cz) / hh
        dip = 1.0 - t * t
        ra, rb = a * (1.0 - 0.14 * dip), b * (1.0 - 0.06 * dip)
        out.append(cylinder((cx, cy, lo), (cx, cy, hi), (ra, rb), "bone", body.displaces,
                            name=body.name, rotation=np.eye(3)))  # fmt: skip
        c_lo = lo + (shell_mm if i == 0 else 0.0)
        c_hi = hi - (shell_mm if i == slices - 1 else 0.0)
        out.append(cylinder((cx, cy, c_lo), (cx, cy, c_hi), (ra - shell_mm, rb - shell_mm),
                            "bone_trabecular", "bone", name=body.name,
                            rotation=np.eye(3)))  # fmt: skip
    return out


def iliac_crests(segments: Sequence[Primitive], shell_mm: float = 1.4) -> list[Primitive]:
    """Each side's crest (the phantom's chain of 5-mm cortical tubes, posterior → anterior)
    rebuilt as a shelled rim: cortex around spongiosa, thin at the posterior and anterior
    superior spines and thickest at the iliac tubercle (≈ 70 % of the way forward)."""
    out: list[Primitive] = []
    for side in (-1.0, 1.0):
        segs = [p for p in segments if math.copysign(1.0, p.centre[0]) == side]
        n = len(segs)
        for i, p in enumerate(segs):
            axis = np.asarray(p.rotation[2], dtype=float)
            c = np.asarray(p.centre, dtype=float)
            p0, p1 = c - axis * p.semi_axes[2], c + axis * p.semi_axes[2]
            f = (i + 0.5) / max(n, 1)
            r = 3.8 + 3.2 * math.exp(-(((f - 0.7) / 0.22) ** 2))
            out.append(cylinder(p0, p1, r, "bone", p.displaces, name="crest"))
            c0 = p0 + axis * (shell_mm if i == 0 else 0.0)
            c1 = p1 - axis * (shell_mm if i == n - 1 else 0.0)
            out.append(cylinder(c0, c1, r - shell_mm, "bone_trabecular", "bone", name="crest"))
    return out


# -- colon and small bowel ------------------------------------------------------------------------
def colon_path(phantom: Phantom, s: _Scale) -> tuple[F64, F64, list[str]]:
    """(centreline points, lumen radii, region names) of the colon from the caecum to the
    rectum, sampled along a Catmull–Rom curve through reference-build control points."""
    from .phantom._shapes import _catmull_rom  # the phantom's own spline

    ya = phantom.ap_mm / 2.0 - 0.8 * phantom.fat_mm - 40.0 * s.y  # anterior abdomen
    yr = phantom.y_spine + 30.0 * s.y  # rectum, in front of the sacrum
    # x, y (relative), z, radius, region
    ctrl: list[tuple[float, float, float, float, str]] = [
        (-85.0, ya - 50.0 * s.y, -85.0, 28.0, "ascending"),  # caecum
        (-103.0, ya - 45.0 * s.y, -30.0, 23.0, "ascending"),
        (-104.0, ya - 45.0 * s.y, 30.0, 22.0, "ascending"),
        (-98.0, ya - 30.0 * s.y, 62.0, 22.0, "transverse"),  # hepatic flexure
        (-55.0, ya - 8.0 * s.y, 52.0, 23.0, "transverse"),
        (-5.0, ya - 4.0 * s.y, 38.0, 23.0, "transverse"),  # sagging to L3
        (45.0, ya - 6.0 * s.y, 42.0, 22.0, "transverse"),
        (86.0, ya - 14.0 * s.y, 66.0, 20.0, "transverse"),
        (100.0, ya - 40.0 * s.y, 160.0, 19.0, "descending"),  # splenic flexure, posterior
        (110.0, ya - 48.0 * s.y, 110.0, 15.0, "descending"),
        (110.0, ya - 52.0 * s.y, 0.0, 15.0, "descending"),
        (98.0, ya - 45.0 * s.y, -60.0, 16.0, "sigmoid"),
        (58.0, ya - 22.0 * s.y, -95.0, 16.0, "sigmoid"),
        (18.0, ya - 18.0 * s.y, -80.0, 16.0, "sigmoid"),
        (-4.0, yr + 10.0 * s.y, -118.0, 17.0, "rectum"),
        (0.0, yr, -150.0, 18.0, "rectum"),
        (0.0, yr - 5.0 * s.y, -185.0, 16.0, "rectum"),
    ]
    pts = np.array([s.p(x, 0.0, z) + np.array([0.0, y, 0.0]) for x, y, z, _, _ in ctrl])
    curve = _catmull_rom(pts, 4.0)
    # radius and region follow the nearest control point along the curve
    near = np.argmin(np.linalg.norm(curve[:, None, :] - pts[None, :, :], axis=2), axis=1)
    radii = np.array([ctrl[int(j)][3] * s.k for j in near])
    regions = [ctrl[int(j)][4] for j in near]
    return curve, radii, regions


def _frame_along(t: F64) -> F64:
    """Rows: local x, local y (as anterior as possible), local z = ``t``."""
    ant = np.array([0.0, 1.0, 0.0])
    ey = ant - float(ant @ t) * t
    if float(np.linalg.norm(ey)) < 1e-6:
        ey = np.array([1.0, 0.0, 0.0]) - t[0] * t
    ey = ey / float(np.linalg.norm(ey))
    return np.stack([np.cross(ey, t), ey, t])


def colon(phantom: Phantom, s: _Scale, rng: np.random.Generator) -> list[Primitive]:
    """Colon contents along :func:`colon_path`, one haustral sac per ``HAUSTRAL_SPACING_MM``.

    Each sac holds gas (:func:`_gas_sac`: 85 % of the lumen's radius, narrowed to 60 % of
    that across the haustral folds between sacs), a gas cap over stool (anterior: gas rises
    in a supine patient) or stool mottled with small gas bubbles.  The state is a Markov chain
    along the colon (a sac keeps its neighbour's state with probability 0.6, else draws from
    its region's mix, :data:`COLON_STATES`/:data:`COLON_REGIONS`); where the colon turns by
    more than 30° from one sac to the next (a flexure) the sac holds no gas cylinder, so that
    flat-ended cylinders do not overlap and count gas twice.  Sigmoid and rectum have no
    haustra: their sacs touch.  The bowel wall and stool are soft tissue, like what surrounds
    them, so only the gas shows."""
    curve, radii, regions = colon_path(phantom, s)
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    h = HAUSTRAL_SPACING_MM * s.k
    out: list[Primitive] = []
    state = "stool"
    prev_t: F64 | None = None
    for centre_s in np.arange(0.5 * h, float(arc[-1]) - 0.5 * h, h):
        i = int(np.searchsorted(arc, centre_s))
        i = min(max(i, 1), len(curve) - 1)
        c = curve[i - 1] + (curve[i] - curve[i - 1]) * (
            (centre_s - arc[i - 1]) / max(float(arc[i] - arc[i - 1]), 1e-9)
        )
        t = (curve[i] - curve[i - 1]) / max(float(seg[i - 1]), 1e-9)
        rot = _frame_along(t)
        r, region = float(radii[i]), regions[i]
        if rng.random() >= 0.6:
            state = COLON_STATES[int(rng.choice(3, p=COLON_REGIONS[region]))]
        haustra = region not in ("sigmoid", "rectum")
        bend = prev_t is not None and float(t @ prev_t) < math.cos(math.radians(30.0))
        prev_t = t
        if state == "gas" and not bend:
            out += _gas_sac(c + rot[1] * 0.1 * r, rot, (0.85 * r, 0.75 * r), h, haustra)
            continue
        if state == "mixed" and not bend:
            out += _gas_sac(c + rot[1] * 0.45 * r, rot, (0.7 * r, 0.35 * r), h, haustra)
        n = int(rng.integers(5, 10) if state == "mixed" else rng.integers(12, 22))
        for _ in range(n):
            ang = rng.uniform(0.0, 2.0 * math.pi)
            rad = 0.7 * r * math.sqrt(rng.random())
            lo = -0.4 if state == "stool" else -0.7  # under a gas cap: the dependent part
            off = (rot[0] * rad * math.cos(ang) + rot[1] * rad * min(math.sin(ang), -lo)
                   + rot[2] * rng.uniform(-0.4, 0.4) * h)  # fmt: skip
            rb = rng.uniform(1.0, 2.6) * s.k
            out.append(ellipsoid(c + off, (rb, rb, rb), "air", "soft_tissue", name="stool gas"))
    return out


def _gas_sac(
    c: F64, rot: F64, radii: tuple[float, float], h: float, haustra: bool
) -> list[Primitive]:
    """Gas filling one sac of length ``h`` along ``rot[2]``: a flat-ended elliptic cylinder over
    84 % of it and, across the fold at its caudal end, a neck of 60 % of its radii (the
    haustral fold crossing part of the lumen); without haustra one cylinder over all of it.
    The pieces abut, so no gas is counted twice."""
    t = rot[2]
    if not haustra:
        return [cylinder(c - 0.5 * h * t, c + 0.5 * h * t, radii, "air", "soft_tissue",
                         name="colon gas", rotation=rot)]  # fmt: skip
    neck = (0.6 * radii[0], 0.6 * radii[1])
    return [
        cylinder(c - 0.42 * h * t, c + 0.42 * h * t, radii, "air", "soft_tissue",
                 name="colon gas", rotation=rot),
        cylinder(c + 0.42 * h * t, c + 0.5 * h * t, neck, "air", "soft_tissue",
                 name="haustral fold", rotation=rot),
        cylinder(c - 0.5 * h * t, c - 0.42 * h * t, neck, "air", "soft_tissue",
                 name="haustral fold", rotation=rot),
    ]  # fmt: skip


def small_bowel_gas(phantom: Phantom, s: _Scale, rng: np.random.Generator) -> list[Primitive]:
    """A few small gas pockets in small-bowel loops, inside the visceral fat (they displace
    fat): 2–5, each 4–9 mm, within the inner half of the fat's ellipsoid."""
    fat = _find_fat(phantom)
    out: list[Primitive] = []
    if fat is None:
        return out
    (cx, cy, cz), (a, b, c) = fat
    for _ in range(int(rng.integers(2, 6))):
        u = rng.uniform(-0.5, 0.5, size=3)
        r = min(rng.uniform(4.0, 9.0) * s.k, 0.45 * b)
        centre = (cx + u[0] * a, cy + 0.2 * u[1] * b, cz + u[2] * c)
        semi = (r * rng.uniform(1.0, 1.6), r, r * rng.uniform(0.8, 1.4))
        out.append(ellipsoid(centre, semi, "air", "adipose", name="small bowel gas"))
    return out


def _find_fat(
    phantom: Phantom,
) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    s = _Scale(phantom)
    organs = solid_organs(phantom, s)
    fat = next((p for p in organs if p.name == "visceral fat"), None)
    return None if fat is None else (fat.centre, fat.semi_axes)


def organ_volume_ml(prims: Sequence[Primitive], name: str) -> float:
    """Sum of the ellipsoid volumes named ``name`` (mL; overlaps counted twice)."""
    return sum(
        4.0 / 3.0 * math.pi * math.prod(p.semi_axes) / 1000.0
        for p in prims
        if p.name == name and p.kind == "ellipsoid"
    )
