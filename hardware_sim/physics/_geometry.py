"""View geometry: a view resolved into the patient frame, ray–primitive chords, projected
bounding boxes and the per-view maps on the ray grid (see :mod:`.imaging`)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._params import ViewGeometry
from .detector import DetectorModel
from .grid import Grid, spr_no_grid
from .phantom import Phantom, Primitive
from .texture import apply_texture
from .xray import MATERIALS

if TYPE_CHECKING:
    from ._detail import DetailMaps

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

DETECTOR_BELOW_TABLE_MM = 70.0  # table top → image receptor (table, grid, cover)
POSITION_ANGLES_DEG = {"supine": 0.0, "prone": 180.0, "lpo": -32.0, "rpo": 32.0}
#: materials with fine structure (bone edges, trabeculae, gas) restored at the panel's pitch
DETAIL_MATERIALS = frozenset({"bone", "bone_trabecular", "air"})
INTERSTITIAL_FRACTION = 0.10  # ECF share of soft tissue carrying interstitial iodine
TISSUE_PLASMA_FRACTION = 0.03  # plasma share of soft tissue


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
@dataclass
class Frame:
    """A view resolved into the patient frame."""

    source: F64  # patient frame
    det_centre: F64  # patient frame
    ex: F64  # detector column direction (patient frame, unit)
    ey: F64  # detector row direction (caudad, unit)
    normal: F64  # detector normal pointing away from the source
    sid_mm: float
    source_to_iso_mm: float
    source_to_entrance_mm: float
    room_to_patient: F64  # 3×3 rotation
    body_centre_y: float


def resolve(phantom: Phantom, g: ViewGeometry) -> Frame:
    if g.patient_position not in POSITION_ANGLES_DEG:
        raise ValueError(
            f"unknown patient position {g.patient_position!r}; "
            f"expected one of {tuple(POSITION_ANGLES_DEG)}"
        )
    phi = POSITION_ANGLES_DEG[g.patient_position]
    ap = phantom.ap_mm
    table_y = -ap / 2.0
    ext = phantom.body_half_extent_mm(phi)
    body_centre_y = table_y + ext
    fulcrum = ap / 2.0 if g.fulcrum_height_mm is None else g.fulcrum_height_mm
    theta = math.radians(g.tube_angle_deg + g.tomo_angle_deg)
    u = np.array([0.0, -math.cos(theta), -math.sin(theta)])  # beam direction (room)
    q = np.array([g.centre_x_mm, table_y + fulcrum, g.centre_z_mm])
    det_y = table_y - DETECTOR_BELOW_TABLE_MM
    s = (q[1] - det_y) / math.cos(theta)
    d0 = q + u * s
    src = d0 - u * g.sid_mm
    iso = np.array([g.centre_x_mm, table_y + ap / 2.0, g.centre_z_mm])
    top_y = body_centre_y + ext
    src_to_entrance = (src[1] - top_y) / math.cos(theta)
    c, sn = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    rz = np.array([[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]])  # patient → room
    inv = rz.T
    shift = np.array([0.0, body_centre_y, 0.0])

    def to_pat(p: F64) -> F64:
        return np.asarray(inv @ (p - shift), dtype=float)

    return Frame(
        source=to_pat(src),
        det_centre=to_pat(d0),
        ex=np.asarray(inv @ np.array([1.0, 0.0, 0.0]), dtype=float),
        ey=np.asarray(inv @ np.array([0.0, 0.0, -1.0]), dtype=float),
        normal=np.asarray(inv @ np.array([0.0, -1.0, 0.0]), dtype=float),
        sid_mm=g.sid_mm,
        source_to_iso_mm=float(np.linalg.norm(iso - src)),
        source_to_entrance_mm=float(src_to_entrance),
        room_to_patient=inv,
        body_centre_y=body_centre_y,
    )


# ---------------------------------------------------------------------------------------------
# per-view maps
# ---------------------------------------------------------------------------------------------
@dataclass
class ViewMaps:
    frame: Frame
    grid_rows: int
    grid_cols: int
    grid_px_mm: float
    u: F64  # grid column coordinates on the detector (mm from the centre)
    v: F64  # grid row coordinates
    ray_len: F64  # |P − S| per grid pixel
    fluence_factor: F32  # (1000/r)² · cos(incidence) · detector pixel area  (mm² at 1 m)
    materials: dict[str, F32]
    detail_coarse: dict[str, F32]  # the detail primitives' share of ``materials`` (see _detail)
    iodine: dict[str, F32]
    ureter_arc: dict[str, F32]  # chord-weighted arc length sums
    spr: F32  # scatter-to-primary ratio without a grid at 80 kVp (kV, grid: per technique)
    grid_cutoff: F32  # the grid's geometric primary transmission (1 without a grid)
    median_mass_g_cm2: float  # typical thickness in the field (for the grid's spectra)
    field_grid: npt.NDArray[np.bool_]
    field_full: npt.NDArray[np.bool_]
    roi: tuple[slice, slice]
    volume_cache: OrderedDict[tuple[str, int], tuple[tuple[slice, slice], F32] | None] = field(
        default_factory=OrderedDict
    )
    parts: Parts | None = None  # fast path: cropped compartment maps (built on demand)
    field_box: tuple[slice, slice] | None = None  # the collimated field on the grid
    #: native-pitch detail per focal spot (mm), built on demand (see _detail)
    detail: dict[float, DetailMaps | None] = field(default_factory=dict)


@dataclass
class UreterPart:
    """A ureter's iodine map reduced to its pixels (fast path)."""

    box: tuple[slice, slice]
    rows: npt.NDArray[np.intp]  # grid pixels with iodine path length
    cols: npt.NDArray[np.intp]
    length: F32  # iodine path length there (mm)
    arc_time: F32  # arc position / bolus speed (s)
    base: F32  # baseline fill + UPJ distension term of the fill profile


@dataclass
class Parts:
    fixed: dict[str, tuple[tuple[slice, slice], F32]]  # bounding box, cropped map
    ureters: dict[str, UreterPart]


def map_for(maps: dict[str, F32], name: str, shape: tuple[int, int]) -> F32:
    """``maps[name]``, a zero map of ``shape`` made on first use (``setdefault`` would
    allocate a whole map on every call)."""
    m = maps.get(name)
    if m is None:
        m = maps[name] = np.zeros(shape, np.float32)
    return m


def chords(
    prim: Primitive, fr: Frame, vm_u: F64, vm_v: F64, ray_len: F64, rows: slice, cols: slice
) -> F32:
    """Chord length (mm) through ``prim`` for the rays of a grid window."""
    m = prim.local_matrix()
    o = m @ (fr.source - np.asarray(prim.centre))
    base = m @ (fr.det_centre - fr.source)
    a = m @ fr.ex
    b = m @ fr.ey
    u = vm_u[cols][None, :]
    v = vm_v[rows][:, None]
    d = [base[k] + a[k] * u + b[k] * v for k in range(3)]
    if prim.kind == "ellipsoid":
        aa = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        bb = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
        cc = float(o @ o) - 1.0
        disc = bb * bb - aa * cc
        dt = 2.0 * np.sqrt(np.maximum(disc, 0.0)) / aa
    elif prim.kind == "cylinder":
        aa = d[0] * d[0] + d[1] * d[1]
        bb = o[0] * d[0] + o[1] * d[1]
        cc = o[0] * o[0] + o[1] * o[1] - 1.0
        disc = bb * bb - aa * cc
        ok = disc > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            sq = np.sqrt(np.maximum(disc, 0.0))
            t1 = np.where(ok, (-bb - sq) / aa, 0.0)
            t2 = np.where(ok, (-bb + sq) / aa, 0.0)
            dz = d[2]
            safe = np.where(np.abs(dz) < 1e-12, 1e-12, dz)
            z1 = (-1.0 - o[2]) / safe
            z2 = (1.0 - o[2]) / safe
        lo = np.maximum(np.maximum(t1, np.minimum(z1, z2)), 0.0)
        hi = np.minimum(np.minimum(t2, np.maximum(z1, z2)), 1.0)
        dt = np.where(ok, np.maximum(hi - lo, 0.0), 0.0)
    else:
        raise ValueError(f"unknown primitive kind {prim.kind!r}")
    out: F32 = (dt * ray_len[rows, cols]).astype(np.float32)
    return out


def bbox(prim: Primitive, fr: Frame, vm: tuple[F64, F64, float]) -> tuple[slice, slice] | None:
    u_grid, v_grid, px = vm
    corners = prim.corners()
    rel = corners - fr.source
    depth = rel @ fr.normal
    if np.any(depth <= 1e-6):
        return slice(0, len(v_grid)), slice(0, len(u_grid))
    t = float((fr.det_centre - fr.source) @ fr.normal) / depth
    hit = fr.source + rel * t[:, None] - fr.det_centre
    uu = hit @ fr.ex
    vv = hit @ fr.ey
    j0 = math.floor((uu.min() - u_grid[0]) / px) - 1
    j1 = math.ceil((uu.max() - u_grid[0]) / px) + 2
    i0 = math.floor((vv.min() - v_grid[0]) / px) - 1
    i1 = math.ceil((vv.max() - v_grid[0]) / px) + 2
    j0, j1 = max(j0, 0), min(j1, len(u_grid))
    i0, i1 = max(i0, 0), min(i1, len(v_grid))
    if j0 >= j1 or i0 >= i1:
        return None
    return slice(i0, i1), slice(j0, j1)


def build_view(
    phantom: Phantom,
    det: DetectorModel,
    g: ViewGeometry,
    grid_factor: int,
    grid: Grid | None = None,
) -> ViewMaps:
    """Path lengths, iodine maps, SPR, grid cut-off and collimation of a view on the ray
    grid."""
    fr = resolve(phantom, g)
    f = grid_factor
    gr, gc = math.ceil(det.rows / f), math.ceil(det.cols / f)
    px = det.pixel_mm * det.rows / gr
    v = np.asarray((np.arange(gr) + 0.5) * px - det.rows * det.pixel_mm / 2.0, np.float64)
    u_px = det.pixel_mm * det.cols / gc
    u = np.asarray((np.arange(gc) + 0.5) * u_px - det.cols * det.pixel_mm / 2.0, np.float64)
    pts = (
        fr.det_centre[None, None, :]
        + u[None, :, None] * fr.ex[None, None, :]
        + v[:, None, None] * fr.ey[None, None, :]
    )
    rel = pts - fr.source
    ray_len: F64 = np.sqrt(np.sum(rel * rel, axis=2))
    cos_inc = np.abs(rel @ fr.normal) / ray_len
    fluence = ((1000.0 / ray_len) ** 2 * cos_inc * det.pixel_mm**2).astype(np.float32)
    mats: dict[str, F32] = {}
    fine: dict[str, F32] = {}
    iod: dict[str, F32] = {}
    arcs: dict[str, F32] = {}
    uv_px = (u, v, px)
    for prim in phantom.primitives:
        bb = bbox(prim, fr, uv_px)
        if bb is None:
            continue
        rs, cs = bb
        ch = chords(prim, fr, u, v, ray_len, rs, cs)
        if prim.material is not None:
            map_for(mats, prim.material, (gr, gc))[rs, cs] += ch
        if prim.displaces is not None:
            map_for(mats, prim.displaces, (gr, gc))[rs, cs] -= ch
        if prim.material in DETAIL_MATERIALS or prim.displaces in DETAIL_MATERIALS:
            for name, sign in ((prim.material, 1.0), (prim.displaces, -1.0)):
                if name is not None:
                    map_for(fine, name, (gr, gc))[rs, cs] += np.float32(sign) * ch
        if prim.compartment is not None:
            map_for(iod, prim.compartment, (gr, gc))[rs, cs] += np.float32(prim.iodine_scale) * ch
            if prim.arc_mm is not None:
                map_for(arcs, prim.compartment, (gr, gc))[rs, cs] += np.float32(prim.arc_mm) * ch
    apply_texture(phantom, fr, u, v, px, mats)  # anatomy: soft-tissue and trabecular texture
    for k in list(iod):
        np.maximum(iod[k], 0.0, out=iod[k])
    soft = np.maximum(mats.get("soft_tissue", np.zeros((gr, gc), np.float32)), 0.0)
    zeros = np.zeros((gr, gc), np.float32)
    iod["interstitial"] = (
        iod.get("interstitial", zeros) + np.float32(INTERSTITIAL_FRACTION) * soft
    ).astype(np.float32)
    iod["plasma"] = (iod.get("plasma", zeros) + np.float32(TISSUE_PLASMA_FRACTION) * soft).astype(
        np.float32
    )
    mass = np.zeros((gr, gc), np.float32)
    for name, arr in mats.items():
        mass += arr * np.float32(MATERIALS[name].density_g_cm3 / 10.0)  # g/cm²
    # collimation (field at the detector plane, centred on the central ray)
    half_w = min(g.field_width_mm, det.cols * det.pixel_mm) / 2.0
    half_h = min(g.field_height_mm, det.rows * det.pixel_mm) / 2.0
    # scatter: the no-grid SPR of the local thickness and the field at the patient's exit
    exit_scale = ((g.sid_mm - DETECTOR_BELOW_TABLE_MM) / g.sid_mm) ** 2
    area_cm2 = 4.0 * half_w * half_h / 100.0 * exit_scale
    spr = spr_no_grid(np.maximum(mass, 0.0), area_cm2, 80.0).astype(np.float32)
    cutoff = np.ones((gr, gc), np.float32)
    if grid is not None:
        rel = fr.source - fr.det_centre
        height = -float(rel @ fr.normal)
        if grid.strips_along == "rows":
            delta = grid.misalignment(u, float(rel @ fr.ex), height)[None, :]
        else:
            delta = grid.misalignment(v, float(rel @ fr.ey), height)[:, None]
        cutoff *= grid.cutoff(delta).astype(np.float32)
    field_grid = (np.abs(u)[None, :] <= half_w) & (np.abs(v)[:, None] <= half_h)
    uf = (np.arange(det.cols) + 0.5 - det.cols / 2.0) * det.pixel_mm
    vf = (np.arange(det.rows) + 0.5 - det.rows / 2.0) * det.pixel_mm
    field_full = (np.abs(uf)[None, :] <= half_w) & (np.abs(vf)[:, None] <= half_h)
    # detector-kerma ROI: central 20 % of the open field
    ri = np.nonzero(np.abs(v) <= 0.2 * half_h)[0]
    ci = np.nonzero(np.abs(u) <= 0.2 * half_w)[0]
    roi = (slice(int(ri[0]), int(ri[-1]) + 1), slice(int(ci[0]), int(ci[-1]) + 1))
    return ViewMaps(
        frame=fr,
        grid_rows=gr,
        grid_cols=gc,
        grid_px_mm=px,
        u=u,
        v=v,
        ray_len=ray_len,
        fluence_factor=fluence,
        materials=mats,
        detail_coarse=fine,
        iodine=iod,
        ureter_arc=arcs,
        spr=spr,
        grid_cutoff=cutoff,
        median_mass_g_cm2=float(np.median(mass[field_grid])) if field_grid.any() else 0.0,
        field_grid=field_grid,
        field_full=field_full.astype(np.float32) > 0,
        roi=roi,
    )
