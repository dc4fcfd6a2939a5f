"""Linear tomosynthesis (nephrotomography) on the simulated C-arm.

A sweep is ``projections`` exposures with the tube tilted by ``tomo_angle_deg`` evenly over
``±sweep_deg/2`` (research note §5.6: 20–50° arcs, tens of images; §1.3: immediate-phase
nephrotomograms at ≈ 8–12 cm above the table top, 1-cm steps).  The imaging chain's geometry
(:func:`.imaging._resolve`) pivots every projection about the *fulcrum*: the central ray always
passes through (centre_x, table top + fulcrum, centre_z), the detector stays horizontal and
slides along z so the central ray hits its centre, and the source sits ``sid_mm`` from the
detector centre along the tilted ray (so its height is ``sid·cos θ`` above the detector).

Reconstruction is shift-and-add: for a plane at height h above the table top, each projection
is resampled so that points of that plane land where they land in the *reference* projection
(the sweep's own geometry at ``tomo_angle_deg = 0``), then the projections are averaged.  In
the room frame (y up, z cranial, table top at y = 0, detector plane at y = −D,
D = ``DETECTOR_BELOW_TABLE_MM``) a tube angle θ (tube + tomo angle) gives:

* source height above the detector H = sid·cos θ; magnification of the plane h:
  M = H / (H − (h + D));
* a plane point (x, z) lands at detector offsets (from the detector centre, mm)
  u = M·(x − centre_x) along the columns and v = −(M·(z − centre_z) + e) along the rows
  (rows run caudad), with e = sin θ·(sid·(1 − M) + M·(f + D)/cos θ), f the fulcrum height
  (e = 0 for h = f: the fulcrum plane only scales, it never shifts).

So a plane maps to each projection by a similarity (scale a = M_k/M_0 about the detector centre
and a row shift (a·e_0 − e_k)/pixel); ``tests/physics/test_tomo.py`` checks these formulas
against :meth:`ImagingChain.project` for every angle of a sweep.  Resampling is bilinear
(``cv2.warpAffine``); pixels a shifted projection does not cover are left out of that pixel's
average: only the collimated field of each projection counts (3 px inside its edge, whose
penumbra would otherwise print as a line), a layer pixel needs half the projections, and the
rows and columns between that core and the nominal field edge (a few px; a few mm along z when
h is far from the fulcrum) repeat the nearest core row/column, so a layer fills the collimated
field like one exposure (the scheduler shutters and windows layers by the nominal field).

Averaging: linear by default.  Each projection is offset- and gain-corrected and its defect
pixels are replaced by a 3×3 median (as the panel's pre-processing would), then the layer is
``N × mean`` of the aligned projections: exactly what a film (or the detector) integrating the
whole sweep would record for structures in the plane, so a layer has the brightness of one
radiograph at the sweep's total technique.  Off-plane structures are smeared along z by
≈ 2·|h − h_obj|·tan(sweep/2)·M.  ``domain="log"`` averages the logarithms instead (a
geometric mean: attenuation line integrals average, so a dense off-plane bone spreads as a
uniform attenuation band rather than a blend of exposures); with few counts per projection
the geometric mean is biased low by ≈ σ²/2 of the relative noise, so linear is the default.
Finally the panel's gain and offset maps are applied again: a layer has the raw frames' value
scale (uint16, more X-rays → higher) and is offset-corrected by the reader like any raw frame.

Dose: the sweep's technique is the whole sweep's — its mAs is split evenly over the
projections, so a nephrotomogram sweep with the mAs of one to three radiographs costs the dose
of one to three radiographs (DAP the same per mAs; entrance and reference kerma a few % more:
an oblique projection's source, ``sid`` from the detector along the tilted ray, is nearer the
patient).
The reported kerma and DAP are the sums of the projections' own values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from .detector import DetectorModel
from .imaging import (
    DETECTOR_BELOW_TABLE_MM,
    ImagingChain,
    RenderedImage,
    TechniqueParams,
    ViewGeometry,
)

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class SweepSpec:
    sweep_deg: float = 30.0  # total arc, e.g. ±15°
    projections: int = 25  # 25–41 typical
    fulcrum_height_mm: float = 90.0  # pivot height above the table top used while sweeping

    def __post_init__(self) -> None:
        if self.projections < 1:
            raise ValueError("a sweep needs at least one projection")
        if not 0.0 <= self.sweep_deg < 90.0:
            raise ValueError("sweep_deg must be in [0, 90)")


@dataclass(frozen=True)
class TomoResult:
    layers: tuple[U16, ...]  # raw-frame value scale, one per requested height
    heights_mm: tuple[float, ...]
    projections: int
    sweep_deg: float
    entrance_air_kerma_mgy: float  # summed over the sweep
    reference_air_kerma_mgy: float
    dap_gy_cm2: float
    pixel_spacing_mm: float


def sweep_angles(spec: SweepSpec) -> list[float]:
    """Tomo angles (degrees, caudad positive) evenly over ±sweep/2, symmetric about 0."""
    n = spec.projections
    if n == 1:
        return [0.0]
    half = spec.sweep_deg / 2.0
    return [float(-half + spec.sweep_deg * i / (n - 1)) for i in range(n)]


def sweep_geometry(geometry: ViewGeometry, spec: SweepSpec, angle_deg: float) -> ViewGeometry:
    """The view of one projection of the sweep (``angle_deg`` = 0: the reference view the
    layers are reconstructed in)."""
    return replace(geometry, tomo_angle_deg=angle_deg, fulcrum_height_mm=spec.fulcrum_height_mm)


def projection_technique(technique: TechniqueParams, spec: SweepSpec) -> TechniqueParams:
    """The technique of one projection: the sweep's mAs split evenly."""
    return replace(technique, mas=technique.mas / spec.projections)


def acquire_sweep(
    chain: ImagingChain,
    geometry: ViewGeometry,
    technique: TechniqueParams,
    spec: SweepSpec,
    iodine_mg_ml: Mapping[str, float],
    volumes_ml: Mapping[str, float] | None = None,
    time_s: float = 0.0,
) -> list[RenderedImage]:
    """Render the projections of one sweep (order of :func:`sweep_angles`).

    ``technique`` is the whole sweep's: each projection gets ``mas / projections``, so the
    sweep costs about the dose of one radiograph at that technique (choose the mAs of 1–3
    radiographs).  The patient is frozen at ``time_s`` (a 25-projection sweep takes ~2.5 s).
    """
    per = projection_technique(technique, spec)
    chain.sweeping = True
    try:
        return [
            chain.render(sweep_geometry(geometry, spec, a), per, iodine_mg_ml, volumes_ml, time_s)
            for a in sweep_angles(spec)
        ]
    finally:
        chain.sweeping = False


# ---------------------------------------------------------------------------------------------
# geometry of the shifts
# ---------------------------------------------------------------------------------------------
def plane_mapping(
    geometry: ViewGeometry, spec: SweepSpec, angle_deg: float, height_mm: float
) -> tuple[float, float]:
    """(M, e): the plane at ``height_mm`` above the table top maps to the projection at
    ``angle_deg`` as u = M·(x − centre_x), v = −(M·(z − centre_z) + e) (mm on the detector,
    from its centre; see the module docstring)."""
    theta = math.radians(geometry.tube_angle_deg + angle_deg)
    d = DETECTOR_BELOW_TABLE_MM
    big_h = geometry.sid_mm * math.cos(theta)
    depth = big_h - (height_mm + d)
    if depth <= 1e-6:
        raise ValueError(f"plane at {height_mm} mm is not between the source and the detector")
    m = big_h / depth
    e = math.sin(theta) * (
        geometry.sid_mm * (1.0 - m) + m * (spec.fulcrum_height_mm + d) / math.cos(theta)
    )
    return m, e


def layer_warp(
    geometry: ViewGeometry,
    spec: SweepSpec,
    angle_deg: float,
    height_mm: float,
    shape: tuple[int, int],
    pixel_mm: float,
) -> npt.NDArray[np.float64]:
    """2×3 affine taking a reference-view pixel (col, row) to the projection at ``angle_deg``
    where the same point of the plane ``height_mm`` lands (``cv2.WARP_INVERSE_MAP`` form)."""
    m0, e0 = plane_mapping(geometry, spec, 0.0, height_mm)
    mk, ek = plane_mapping(geometry, spec, angle_deg, height_mm)
    a = mk / m0
    rows, cols = shape
    cc, rc = cols / 2.0 - 0.5, rows / 2.0 - 0.5
    return np.array(
        [
            [a, 0.0, cc * (1.0 - a)],
            [0.0, a, rc * (1.0 - a) + (a * e0 - ek) / pixel_mm],
        ]
    )


def shift_and_add(
    projections: Sequence[npt.NDArray[np.floating] | npt.NDArray[np.integer]],
    angles_deg: Sequence[float],
    height_mm: float,
    spec: SweepSpec,
    geometry: ViewGeometry,
    pixel_mm: float,
    *,
    domain: Literal["linear", "log"] = "linear",
) -> F32:
    """Reconstruct the plane at ``height_mm`` above the table top, in the reference view
    (``tomo_angle_deg`` = 0 of ``geometry`` with ``spec``'s fulcrum).

    ``projections`` must be offset-corrected (signal ∝ X-rays, ≥ 0; one per angle of
    ``angles_deg``); returns ``N × the average`` of the aligned projections (float32, same
    scale: an in-plane structure looks as in one exposure of the whole sweep's mAs), averaged
    linearly or, with ``domain="log"``, as a geometric mean (see the module docstring).
    """
    if len(projections) != len(angles_deg) or not projections:
        raise ValueError("need one projection per angle, and at least one")
    if domain not in ("linear", "log"):
        raise ValueError(f"domain must be 'linear' or 'log', not {domain!r}")
    shape = projections[0].shape
    rows, cols = int(shape[0]), int(shape[1])
    acc = np.zeros((rows, cols), np.float32)
    cover = np.zeros((rows, cols), np.float32)
    field = field_mask(geometry, (rows, cols), pixel_mm)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for proj, ang in zip(projections, angles_deg, strict=True):
        img = np.asarray(proj, np.float32)
        if domain == "log":
            img = np.log(np.maximum(img, np.float32(0.5)))
        warp = layer_warp(geometry, spec, ang, height_mm, (rows, cols), pixel_mm)
        acc += cv2.warpAffine(img * field, warp, (cols, rows), flags=flags, borderValue=0.0)
        cover += cv2.warpAffine(field, warp, (cols, rows), flags=flags, borderValue=0.0)
    n = np.float32(len(projections))
    mean = acc / np.maximum(cover, np.float32(1e-3))
    if domain == "log":
        mean = np.exp(mean)
    valid = cover >= 0.5 * n
    out: F32 = np.where(valid, n * mean, 0.0).astype(np.float32)
    return _fill_field(out, valid, field_mask(geometry, (rows, cols), pixel_mm, 0.0) > 0)


def _fill_field(img: F32, valid: npt.NDArray[np.bool_], nominal: npt.NDArray[np.bool_]) -> F32:
    """Extend the fully covered core of a layer to the nominal collimated field by replicating
    its edge rows and columns (a few px), so a layer fills the field like one exposure."""
    per_row, per_col = valid.sum(axis=1), valid.sum(axis=0)
    if per_row.max() == 0:
        return img
    rows_ok = np.nonzero(per_row >= 0.95 * per_row.max())[0]
    cols_ok = np.nonzero(per_col >= 0.95 * per_col.max())[0]
    r0, r1, c0, c1 = rows_ok[0], rows_ok[-1], cols_ok[0], cols_ok[-1]
    while r1 - r0 > 2 and c1 - c0 > 2 and not valid[r0 : r1 + 1, c0 : c1 + 1].all():
        r0, r1, c0, c1 = r0 + 1, r1 - 1, c0 + 1, c1 - 1  # round corners: shrink to a full core
    ri = np.clip(np.arange(img.shape[0]), r0, r1)
    ci = np.clip(np.arange(img.shape[1]), c0, c1)
    core = np.zeros_like(valid)
    core[r0 : r1 + 1, c0 : c1 + 1] = True
    out: F32 = np.where(nominal & ~core, img[ri][:, ci], img).astype(np.float32)
    return out


def field_mask(
    geometry: ViewGeometry, shape: tuple[int, int], pixel_mm: float, margin_px: float = 3.0
) -> F32:
    """1 inside the collimated field (at the detector plane, centred on the detector: it
    follows the central ray through the sweep), else 0 — as the imaging chain collimates, but
    ``margin_px`` inside its edge: the chain's collimation edge is a ramp ~2 px wide, which
    would otherwise be averaged into the layer as a dark line along the field edge."""
    rows, cols = shape
    margin = margin_px * pixel_mm
    half_w = min(geometry.field_width_mm, cols * pixel_mm) / 2.0 - margin
    half_h = min(geometry.field_height_mm, rows * pixel_mm) / 2.0 - margin
    u = (np.arange(cols) + 0.5 - cols / 2.0) * pixel_mm
    v = (np.arange(rows) + 0.5 - rows / 2.0) * pixel_mm
    inside = (np.abs(u)[None, :] <= half_w) & (np.abs(v)[:, None] <= half_h)
    out: F32 = inside.astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# the whole acquisition
# ---------------------------------------------------------------------------------------------
def _corrected(raw: U16, det: DetectorModel, gain: F32, offset: F32) -> F32:
    """Offset/gain correction and defect-pixel replacement (3×3 median of the neighbours)."""
    sig = (raw.astype(np.float32) - offset) / gain
    rr, cc, _ = det.defects()
    if rr.size:
        med = cv2.medianBlur(np.maximum(sig, 0.0).astype(np.float32), 3)
        sig[rr, cc] = med[rr, cc]
    out: F32 = np.maximum(sig, 0.0)
    return out


def tomosynthesis(
    chain: ImagingChain,
    geometry: ViewGeometry,
    technique: TechniqueParams,
    spec: SweepSpec,
    heights_mm: Sequence[float],
    iodine_mg_ml: Mapping[str, float],
    volumes_ml: Mapping[str, float] | None = None,
    time_s: float = 0.0,
    *,
    domain: Literal["linear", "log"] = "linear",
) -> TomoResult:
    """One sweep (:func:`acquire_sweep`) reconstructed at each of ``heights_mm`` above the table
    top (:func:`shift_and_add`).  ``technique`` is the whole sweep's (mAs split over the
    projections: a sweep costs about one radiograph's dose at that technique; nephrotomography
    uses 1–3 radiographs' worth).  Layers are uint16 with the raw frames' scale: the panel's
    gain and offset maps are re-applied to the reconstruction of the corrected projections."""
    angles = sweep_angles(spec)
    images = acquire_sweep(chain, geometry, technique, spec, iodine_mg_ml, volumes_ml, time_s)
    det = chain.detector
    gain, offset = det.gain_map(), det.offset_map()
    corrected = [_corrected(im.pixels, det, gain, offset) for im in images]
    px = images[0].pixel_spacing_mm
    layers: list[U16] = []
    for h in heights_mm:
        rec = shift_and_add(corrected, angles, float(h), spec, geometry, px, domain=domain)
        raw = np.rint(rec * gain + offset)
        layers.append(np.clip(raw, 0, det.max_value).astype(np.uint16))
    return TomoResult(
        layers=tuple(layers),
        heights_mm=tuple(float(h) for h in heights_mm),
        projections=spec.projections,
        sweep_deg=spec.sweep_deg,
        entrance_air_kerma_mgy=float(sum(im.entrance_air_kerma_mgy for im in images)),
        reference_air_kerma_mgy=float(sum(im.reference_air_kerma_mgy for im in images)),
        dap_gy_cm2=float(sum(im.dap_gy_cm2 for im in images)),
        pixel_spacing_mm=px,
    )
