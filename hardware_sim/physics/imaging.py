"""The imaging chain: cone-beam projection of the phantom, polychromatic attenuation, detector.

Geometry (room frame = supine patient frame: X patient's left, Y up, Z cranial, mm).  The table
top is at Y = −ap/2, the isocentre at table top + ap/2 (Y = 0), the detector (under-table
bucky, horizontal) ``DETECTOR_BELOW_TABLE_MM`` below the table top.  The central ray passes
through (centre_x, fulcrum, centre_z) tilted in the Y–Z plane by tube_angle + tomo_angle
(positive = caudad: the beam runs toward the feet); the source is ``sid_mm`` from the detector
along it, and the detector slides so that the central ray hits its centre.  The patient is
rotated about the long axis (prone 180°, LPO −32°: left side down, RPO +32°) and rests on the
table.  Image rows run caudad (row 0 = cranial), columns toward room +X (the supine
patient's left, i.e. the usual AP display with the patient's right on the viewer's left).

Speed (linearity): for each :class:`ViewGeometry` the chain computes, once, on a half-
resolution ray grid, the path length through every material and the iodine path length of
every contrast compartment, analytically per primitive and only over each primitive's
projected bounding box (ray–ellipsoid / ray–cylinder chords).  For each (view, spectrum) it
keeps the energy-resolved tissue transmission weighted by fluence × detector absorbed energy.
A frame then costs one exponential per energy bin for the iodine, a scatter estimate, an
upsampling to the panel and the detector read-out.

Iodine per frame: areal density A = Σ_c C_c·L_c (mg/cm²).  The bladder and the two
pelvicalyceal systems change shape with their volumes (bladder dome rises, calyces distend and
blunt): their maps are recomputed per volume quantised to 5 % steps and cached per view (a few
ms each, small bounding boxes); ureters are modulated by travelling peristaltic boluses
(``time_s``): a bolus every
60/peristalsis s moving 25 mm/s, so a film shows segments, not a uniform tube [S48–S50];
soft tissue carries 10 % interstitial + 3 % plasma iodine (total-body opacification).

Scatter: an anti-scatter-grid-level scatter-to-primary ratio ∝ the mass thickness
(``scatter_to_primary`` at 20 g/cm²), spread by a broad Gaussian (σ 40 mm).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from .detector import DetectorModel
from .phantom import Phantom, Primitive
from .xray import (
    MATERIALS,
    air_kerma_ugy_per_mas,
    binned_spectrum,
    iodine_mu_per_mg_cm2,
    kerma_ugy_per_photon_mm2,
    mu_per_mm,
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]

DETECTOR_BELOW_TABLE_MM = 70.0  # table top → image receptor (table, grid, cover)
POSITION_ANGLES_DEG = {"supine": 0.0, "prone": 180.0, "lpo": -32.0, "rpo": 32.0}
INTERSTITIAL_FRACTION = 0.10  # ECF share of soft tissue carrying interstitial iodine
TISSUE_PLASMA_FRACTION = 0.03  # plasma share of soft tissue
URETER_BOLUS_SPEED_MM_S = 25.0
URETER_BOLUS_HALF_LENGTH_MM = 22.0
URETER_BASELINE_FILL = 0.08
PERISTALSIS_PER_MIN = 3.0  # 1–5/min [S48][S50]
# compartments drawn per volume (and the volume assumed when none is given)
VOLUME_COMPARTMENTS = {"bladder": 150.0, "pelvis_left": 7.0, "pelvis_right": 7.0}


@dataclass(frozen=True)
class ViewGeometry:
    patient_position: str = "supine"  # "supine" | "prone" | "lpo" | "rpo"
    tube_angle_deg: float = 0.0  # cranio-caudal angulation; positive = caudad
    sid_mm: float = 1150.0
    table_height_mm: float = 0.0  # unused offset
    centre_z_mm: float = 0.0  # central ray on the patient (z; 0 = iliac crest)
    centre_x_mm: float = 0.0
    field_width_mm: float = 350.0  # collimated field at the detector plane
    field_height_mm: float = 430.0  # along z
    tomo_angle_deg: float = 0.0  # extra linear-tomography angle; pivots about the fulcrum
    fulcrum_height_mm: float | None = None  # above the table top; None = isocentre (ap/2)


@dataclass(frozen=True)
class TechniqueParams:
    kvp: float
    mas: float
    filtration_mm_al: float = 2.5
    filtration_mm_cu: float = 0.0
    focal_spot_mm: float = 1.2


@dataclass(frozen=True)
class RenderedImage:
    pixels: U16  # rows×cols raw detector values (collimated-out region ≈ dark offset)
    pixel_spacing_mm: float  # at the detector
    entrance_air_kerma_mgy: float  # at the patient entrance surface, no backscatter
    reference_air_kerma_mgy: float  # at the interventional reference point
    dap_gy_cm2: float  # kerma-area product
    detector_kerma_ugy: float  # mean detector input air kerma behind the patient (centre)


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
@dataclass
class _Frame:
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


def _resolve(phantom: Phantom, g: ViewGeometry) -> _Frame:
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

    return _Frame(
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
class _ViewMaps:
    frame: _Frame
    grid_rows: int
    grid_cols: int
    grid_px_mm: float
    u: F64  # grid column coordinates on the detector (mm from the centre)
    v: F64  # grid row coordinates
    ray_len: F64  # |P − S| per grid pixel
    fluence_factor: F32  # (1000/r)² · cos(incidence) · detector pixel area  (mm² at 1 m)
    materials: dict[str, F32]
    iodine: dict[str, F32]
    ureter_arc: dict[str, F32]  # chord-weighted arc length sums
    spr: F32
    field_grid: npt.NDArray[np.bool_]
    field_full: npt.NDArray[np.bool_]
    roi: tuple[slice, slice]
    volume_cache: OrderedDict[tuple[str, int], tuple[tuple[slice, slice], F32] | None] = field(
        default_factory=OrderedDict
    )


@dataclass
class _SpectralWeights:
    energies: F64
    signal: F32  # (bins, gr, gc): keV absorbed per full-res pixel per mAs, tissue only
    kerma_roi: F32  # (bins, roi pixels): µGy per mAs behind the tissue in the ROI
    iodine_k: F64  # exponent per mg/cm² iodine, per bin
    scatter_energy_kev: float


def _chords(
    prim: Primitive, fr: _Frame, vm_u: F64, vm_v: F64, ray_len: F64, rows: slice, cols: slice
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


def _bbox(prim: Primitive, fr: _Frame, vm: tuple[F64, F64, float]) -> tuple[slice, slice] | None:
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


# ---------------------------------------------------------------------------------------------
# the chain
# ---------------------------------------------------------------------------------------------
class ImagingChain:
    """Renders frames of ``phantom`` on ``detector`` (see the module docstring)."""

    def __init__(
        self,
        phantom: Phantom,
        detector: DetectorModel,
        seed: int = 0,
        *,
        scatter_to_primary: float = 0.45,
        view_cache_size: int = 4,
    ) -> None:
        self.phantom = phantom
        self.detector = detector
        self.seed = seed
        self.scatter_to_primary = scatter_to_primary
        self._views: OrderedDict[ViewGeometry, _ViewMaps] = OrderedDict()
        self._weights: OrderedDict[tuple[ViewGeometry, float, float, float], _SpectralWeights] = (
            OrderedDict()
        )
        self._cache_size = view_cache_size
        self._counter = 0
        self._grid_factor = 2 if max(detector.rows, detector.cols) > 256 else 1

    # -- public ---------------------------------------------------------------------------------
    def render(
        self,
        geometry: ViewGeometry,
        technique: TechniqueParams,
        iodine_mg_ml: Mapping[str, float],
        volumes_ml: Mapping[str, float] | None = None,
        time_s: float = 0.0,
    ) -> RenderedImage:
        if technique.mas < 0:
            raise ValueError("mAs must be ≥ 0")
        vm = self._view(geometry)
        w = self._spectral(geometry, vm, technique)
        areal = self._iodine_areal_mg_cm2(vm, iodine_mg_ml, volumes_ml, time_s)
        sig = np.zeros((vm.grid_rows, vm.grid_cols), np.float32)
        var = np.zeros_like(sig)
        roi_kerma = 0.0
        roi_areal = areal[vm.roi]
        for k, e in enumerate(w.energies):
            att = np.exp(np.float32(-w.iodine_k[k]) * areal)
            contrib = w.signal[k] * att
            sig += contrib
            var += np.float32(e) * contrib
            roi_kerma += float(np.mean(w.kerma_roi[k] * att[vm.roi].ravel()))
        del roi_areal
        mas = np.float32(technique.mas)
        sig *= mas
        var *= mas
        # scatter (low frequency): SPR ∝ mass thickness, spread widely
        if self.scatter_to_primary > 0:
            sc = self._scatter(vm, sig)
            sig += sc
            var += sc * np.float32(w.scatter_energy_kev)
        det = self.detector
        full_sig: F32 = np.asarray(
            cv2.resize(sig, (det.cols, det.rows), interpolation=cv2.INTER_LINEAR), np.float32
        )
        full_var: F32 = np.asarray(
            cv2.resize(var, (det.cols, det.rows), interpolation=cv2.INTER_LINEAR), np.float32
        )
        full_sig *= vm.field_full
        full_var *= vm.field_full
        rng = np.random.default_rng([self.seed, self._counter])
        self._counter += 1
        pixels = det.read_out(full_sig, full_var, rng)
        return RenderedImage(
            pixels=pixels,
            pixel_spacing_mm=det.pixel_mm,
            **self._dose(geometry, vm, technique),
            detector_kerma_ugy=roi_kerma * float(technique.mas),
        )

    def dark_frame(self) -> U16:
        rng = np.random.default_rng([self.seed, self._counter, 0xDA])
        self._counter += 1
        return self.detector.dark(rng)

    def flat_frame(self, technique: TechniqueParams, sid_mm: float = 1150.0) -> U16:
        """An open-field exposure without the patient (inverse square and obliquity included)."""
        det = self.detector
        e, n = binned_spectrum(
            technique.kvp, technique.filtration_mm_al, technique.filtration_mm_cu
        )
        ew = det.energy_weights(e)
        y = (np.arange(det.rows) + 0.5 - det.rows / 2.0) * det.pixel_mm
        x = (np.arange(det.cols) + 0.5 - det.cols / 2.0) * det.pixel_mm
        r2 = sid_mm**2 + x[None, :] ** 2 + y[:, None] ** 2
        geo = (1000.0**2 / r2) * (sid_mm / np.sqrt(r2)) * det.pixel_mm**2
        sig = (geo * float(np.sum(n * ew)) * technique.mas).astype(np.float32)
        var = (geo * float(np.sum(n * ew * e)) * technique.mas).astype(np.float32)
        rng = np.random.default_rng([self.seed, self._counter, 0xF1])
        self._counter += 1
        return det.read_out(sig, var, rng)

    def project(
        self, geometry: ViewGeometry, point_mm: tuple[float, float, float]
    ) -> tuple[float, float]:
        """(row, col) on the detector of a patient-frame point (for ROIs in tests and tools)."""
        fr = _resolve(self.phantom, geometry)
        rel = np.asarray(point_mm, dtype=float) - fr.source
        t = float((fr.det_centre - fr.source) @ fr.normal) / float(rel @ fr.normal)
        hit = fr.source + rel * t - fr.det_centre
        det = self.detector
        col = float(hit @ fr.ex) / det.pixel_mm + det.cols / 2.0 - 0.5
        row = float(hit @ fr.ey) / det.pixel_mm + det.rows / 2.0 - 0.5
        return row, col

    # -- views ----------------------------------------------------------------------------------
    def _view(self, g: ViewGeometry) -> _ViewMaps:
        vm = self._views.get(g)
        if vm is not None:
            self._views.move_to_end(g)
            return vm
        vm = self._build_view(g)
        self._views[g] = vm
        while len(self._views) > self._cache_size:
            self._views.popitem(last=False)
        return vm

    def _build_view(self, g: ViewGeometry) -> _ViewMaps:
        det = self.detector
        fr = _resolve(self.phantom, g)
        f = self._grid_factor
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
        iod: dict[str, F32] = {}
        arcs: dict[str, F32] = {}
        grid = (u, v, px)
        for prim in self.phantom.primitives:
            bb = _bbox(prim, fr, grid)
            if bb is None:
                continue
            rs, cs = bb
            ch = _chords(prim, fr, u, v, ray_len, rs, cs)
            if prim.material is not None:
                mats.setdefault(prim.material, np.zeros((gr, gc), np.float32))[rs, cs] += ch
            if prim.displaces is not None:
                mats.setdefault(prim.displaces, np.zeros((gr, gc), np.float32))[rs, cs] -= ch
            if prim.compartment is not None:
                iod.setdefault(prim.compartment, np.zeros((gr, gc), np.float32))[rs, cs] += (
                    np.float32(prim.iodine_scale) * ch
                )
                if prim.arc_mm is not None:
                    arcs.setdefault(prim.compartment, np.zeros((gr, gc), np.float32))[rs, cs] += (
                        np.float32(prim.arc_mm) * ch
                    )
        for k in list(iod):
            np.maximum(iod[k], 0.0, out=iod[k])
        soft = np.maximum(mats.get("soft_tissue", np.zeros((gr, gc), np.float32)), 0.0)
        zeros = np.zeros((gr, gc), np.float32)
        iod["interstitial"] = (
            iod.get("interstitial", zeros) + np.float32(INTERSTITIAL_FRACTION) * soft
        ).astype(np.float32)
        iod["plasma"] = (
            iod.get("plasma", zeros) + np.float32(TISSUE_PLASMA_FRACTION) * soft
        ).astype(np.float32)
        mass = np.zeros((gr, gc), np.float32)
        for name, arr in mats.items():
            mass += arr * np.float32(MATERIALS[name].density_g_cm3 / 10.0)  # g/cm²
        spr = (np.float32(self.scatter_to_primary / 20.0) * np.maximum(mass, 0.0)).astype(
            np.float32
        )
        # collimation (field at the detector plane, centred on the central ray)
        half_w = min(g.field_width_mm, det.cols * det.pixel_mm) / 2.0
        half_h = min(g.field_height_mm, det.rows * det.pixel_mm) / 2.0
        field_grid = (np.abs(u)[None, :] <= half_w) & (np.abs(v)[:, None] <= half_h)
        uf = (np.arange(det.cols) + 0.5 - det.cols / 2.0) * det.pixel_mm
        vf = (np.arange(det.rows) + 0.5 - det.rows / 2.0) * det.pixel_mm
        field_full = (np.abs(uf)[None, :] <= half_w) & (np.abs(vf)[:, None] <= half_h)
        # detector-kerma ROI: central 20 % of the open field
        ri = np.nonzero(np.abs(v) <= 0.2 * half_h)[0]
        ci = np.nonzero(np.abs(u) <= 0.2 * half_w)[0]
        roi = (slice(int(ri[0]), int(ri[-1]) + 1), slice(int(ci[0]), int(ci[-1]) + 1))
        return _ViewMaps(
            frame=fr,
            grid_rows=gr,
            grid_cols=gc,
            grid_px_mm=px,
            u=u,
            v=v,
            ray_len=ray_len,
            fluence_factor=fluence,
            materials=mats,
            iodine=iod,
            ureter_arc=arcs,
            spr=spr,
            field_grid=field_grid,
            field_full=field_full.astype(np.float32) > 0,
            roi=roi,
        )

    def _spectral(self, g: ViewGeometry, vm: _ViewMaps, t: TechniqueParams) -> _SpectralWeights:
        key = (g, round(t.kvp, 1), round(t.filtration_mm_al, 2), round(t.filtration_mm_cu, 2))
        w = self._weights.get(key)
        if w is not None:
            self._weights.move_to_end(key)
            return w
        e, n = binned_spectrum(t.kvp, t.filtration_mm_al, t.filtration_mm_cu)
        ew = self.detector.energy_weights(e)
        kph = kerma_ugy_per_photon_mm2(e)
        mus = {name: mu_per_mm(name, e) for name in vm.materials}
        sig = np.empty((len(e), vm.grid_rows, vm.grid_cols), np.float32)
        kr = []
        for k in range(len(e)):
            expo = np.zeros((vm.grid_rows, vm.grid_cols), np.float32)
            for name, arr in vm.materials.items():
                expo += np.float32(mus[name][k]) * arr
            trans = np.exp(-expo)
            trans *= vm.field_grid
            sig[k] = np.float32(n[k] * ew[k]) * vm.fluence_factor * trans
            # kerma behind the patient per mAs (µGy), per ROI pixel; fluence per mm² at r
            area = np.float32(self.detector.pixel_mm**2)
            kr.append(
                (np.float32(n[k] * kph[k]) * vm.fluence_factor[vm.roi] / area * trans[vm.roi])
                .ravel()
                .astype(np.float32)
            )
        # mean absorbed energy behind ~20 cm of tissue (for the scatter's noise)
        tot = sig.reshape(len(e), -1).sum(axis=1)
        se = float(np.sum(tot * e) / max(float(np.sum(tot)), 1e-30))
        w = _SpectralWeights(e, sig, np.stack(kr), iodine_mu_per_mg_cm2(e), se)
        self._weights[key] = w
        while len(self._weights) > self._cache_size:
            self._weights.popitem(last=False)
        return w

    # -- per frame --------------------------------------------------------------------------------
    def _volume_map(
        self, vm: _ViewMaps, comp: str, volume_ml: float
    ) -> tuple[tuple[slice, slice], F32] | None:
        """Iodine path-length map of a volume-dependent compartment (bladder, pelvis_*)."""
        q = round(math.log(max(volume_ml, 0.1)) / math.log(1.05))
        key = (comp, q)
        if key in vm.volume_cache:
            vm.volume_cache.move_to_end(key)
            return vm.volume_cache[key]
        vol = 1.05**q
        if comp == "bladder":
            prims = [self.phantom.bladder_primitive(vol)]
        else:
            prims = self.phantom.collecting_system(comp.removeprefix("pelvis_"), vol)
        grid = (vm.u, vm.v, vm.grid_px_mm)
        boxes = [(p, _bbox(p, vm.frame, grid)) for p in prims]
        live = [(p, b) for p, b in boxes if b is not None]
        entry: tuple[tuple[slice, slice], F32] | None = None
        if live:
            r0 = min(b[0].start for _, b in live)
            r1 = max(b[0].stop for _, b in live)
            c0 = min(b[1].start for _, b in live)
            c1 = max(b[1].stop for _, b in live)
            acc = np.zeros((r1 - r0, c1 - c0), np.float32)
            for p, (rs, cs) in live:
                ch = _chords(p, vm.frame, vm.u, vm.v, vm.ray_len, rs, cs)
                acc[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] += (
                    np.float32(p.iodine_scale) * ch
                )
            np.maximum(acc, 0.0, out=acc)
            entry = ((slice(r0, r1), slice(c0, c1)), acc)
        vm.volume_cache[key] = entry
        while len(vm.volume_cache) > 96:
            vm.volume_cache.popitem(last=False)
        return entry

    def _iodine_areal_mg_cm2(
        self,
        vm: _ViewMaps,
        conc: Mapping[str, float],
        volumes: Mapping[str, float] | None,
        time_s: float,
    ) -> F32:
        """Σ_c C_c·L_c in mg/cm² on the grid (C mg/mL = mg/cm³; L mm → cm)."""
        areal = np.zeros((vm.grid_rows, vm.grid_cols), np.float32)
        vols = volumes or {}
        for comp, lmap in vm.iodine.items():
            c = float(conc.get(comp, 0.0))
            if c <= 0.0:
                continue
            if comp.startswith("ureter_"):
                areal += self._ureter_areal(vm, comp, c, vols, time_s)
                continue
            areal += np.float32(0.1 * c) * lmap
        for comp, default_ml in VOLUME_COMPARTMENTS.items():
            c = float(conc.get(comp, 0.0))
            if c <= 0.0:
                continue
            entry = self._volume_map(vm, comp, float(vols.get(comp, default_ml)))
            if entry is not None:
                (rs, cs), ch = entry
                areal[rs, cs] += np.float32(0.1 * c) * ch
        return areal

    def _ureter_areal(
        self, vm: _ViewMaps, comp: str, c: float, vols: Mapping[str, float], time_s: float
    ) -> F32:
        lmap = vm.iodine[comp]
        arc = vm.ureter_arc.get(comp)
        if arc is None:
            return np.float32(0.1 * c) * lmap
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(lmap > 1e-3, arc / np.maximum(lmap, 1e-6), 0.0).astype(np.float32)
        period = 60.0 / PERISTALSIS_PER_MIN
        phase = 0.0 if comp.endswith("left") else 0.37 * period
        tau = (time_s - phase - s / URETER_BOLUS_SPEED_MM_S) % period
        tau = np.minimum(tau, period - tau)
        sigma_t = URETER_BOLUS_HALF_LENGTH_MM / URETER_BOLUS_SPEED_MM_S
        g = np.exp(-0.5 * (tau / sigma_t) ** 2) + URETER_BASELINE_FILL + 0.5 * np.exp(-s / 25.0)
        g_mean = sigma_t * math.sqrt(2.0 * math.pi) / period + URETER_BASELINE_FILL + 0.05
        tube_ml = self.phantom.ureter_tube_ml
        amp = 1.0
        if comp in vols:
            amp = float(np.clip(vols[comp] / (tube_ml * g_mean), 0.0, 2.0))
        out: F32 = (np.float32(0.1 * c * amp) * lmap * g).astype(np.float32)
        return out

    def _scatter(self, vm: _ViewMaps, primary: F32) -> F32:
        src = primary * vm.spr
        small = cv2.resize(
            src,
            (max(vm.grid_cols // 8, 4), max(vm.grid_rows // 8, 4)),
            interpolation=cv2.INTER_AREA,
        )
        sigma_px = 40.0 / (vm.grid_px_mm * vm.grid_rows / small.shape[0])
        small = cv2.GaussianBlur(small, (0, 0), sigma_px, borderType=cv2.BORDER_CONSTANT)
        # normalise so that the blurred field keeps the total scattered energy
        big = cv2.resize(small, (vm.grid_cols, vm.grid_rows), interpolation=cv2.INTER_LINEAR)
        return (big * vm.field_grid).astype(np.float32)

    def _dose(self, g: ViewGeometry, vm: _ViewMaps, t: TechniqueParams) -> dict[str, float]:
        k1m = air_kerma_ugy_per_mas(t.kvp, t.filtration_mm_al, t.filtration_mm_cu) * t.mas  # µGy
        fr = vm.frame
        det = self.detector
        ent = k1m * (1000.0 / fr.source_to_entrance_mm) ** 2 / 1000.0
        ref = k1m * (1000.0 / (fr.source_to_iso_mm - 150.0)) ** 2 / 1000.0
        w = min(g.field_width_mm, det.cols * det.pixel_mm) / 10.0
        h = min(g.field_height_mm, det.rows * det.pixel_mm) / 10.0
        k_det = k1m * (1000.0 / fr.sid_mm) ** 2  # µGy at the detector plane, free in air
        dap = k_det * 1e-6 * w * h
        return {
            "entrance_air_kerma_mgy": ent,
            "reference_air_kerma_mgy": ref,
            "dap_gy_cm2": dap,
        }


def slab_signal(
    technique: TechniqueParams,
    layers_mm: Mapping[str, float],
    iodine_mg_cm2: float = 0.0,
    detector: DetectorModel | None = None,
) -> float:
    """Absorbed detector energy (keV per mm² per mAs at 1 m, primary only) behind flat slabs.

    ``layers_mm`` maps material names (see :data:`xray.MATERIALS`) to thicknesses; iodine is
    added as an areal density.  Uses the same spectrum binning, attenuation and detector
    energy weighting as :class:`ImagingChain`.
    """
    det = detector or DetectorModel()
    e, n = binned_spectrum(technique.kvp, technique.filtration_mm_al, technique.filtration_mm_cu)
    expo = np.zeros_like(e)
    for name, mm in layers_mm.items():
        expo += mu_per_mm(name, e) * mm
    expo += iodine_mu_per_mg_cm2(e) * iodine_mg_cm2
    return float(np.sum(n * det.energy_weights(e) * np.exp(-expo)) * technique.mas)


# ---------------------------------------------------------------------------------------------
# display
# ---------------------------------------------------------------------------------------------
def vals_mask_body(values: npt.NDArray[np.float32], median: float) -> npt.NDArray[np.bool_]:
    """Pixels that are not direct beam: less than e^2.5 above the median signal."""
    return np.asarray(values < median + 2.5)


def to_display(
    raw: npt.NDArray[np.uint16] | npt.NDArray[np.floating],
    dark: npt.NDArray[np.uint16] | npt.NDArray[np.floating] | float | None = None,
    *,
    shutter: bool = True,
    compress: float = 0.5,
    detail: float = 0.6,
) -> U8:
    """Log-transform and window a raw frame for viewing: bone and iodine WHITE.

    ``dark`` is a dark frame or offset (default: the detector's nominal 1000-count offset).
    The window is taken on the exposed region (signal well above the dark level), excluding
    the direct beam (more than e^2.5 above the median signal) and saturated pixels, at the
    0.5–99.5 percentiles.  Unexposed (collimated-out) pixels are shown black when ``shutter``.
    """
    r = np.asarray(raw, dtype=np.float32)
    off: npt.NDArray[np.float32] | np.float32
    if dark is None:
        off = np.float32(DetectorModel().offset_counts)
    elif isinstance(dark, int | float):
        off = np.float32(dark)
    else:
        off = np.asarray(dark, dtype=np.float32)
    sig = r - off
    # The collimated field is a rectangle: find the exposed rows and columns from the mean
    # profiles (robust at fluoroscopic doses, where bone may be only tens of counts above the
    # offset), then stay 4 px inside its edges.
    cp = sig.mean(axis=0)
    rp = sig.mean(axis=1)
    cols = cp > 0.05 * float(np.percentile(cp, 95)) + 3.0
    rows = rp > 0.05 * float(np.percentile(rp, 95)) + 3.0
    exposed_u8 = (rows[:, None] & cols[None, :]).astype(np.uint8)
    exposed = cv2.erode(exposed_u8, np.ones((9, 9), np.uint8)) > 0
    if not np.any(exposed):
        return np.zeros(r.shape, np.uint8)
    # 3×3 median: hides defect pixels (as defect-pixel correction would)
    logs = cv2.medianBlur(np.log(np.maximum(sig, 1.0)).astype(np.float32), 3)
    vals = logs[exposed & (r < 65000.0)]
    if vals.size == 0:
        vals = logs[exposed]
    med = float(np.median(vals))
    body = vals[vals < med + 2.5]
    if body.size < 0.2 * vals.size:
        body = vals
    # Dynamic-range compression + detail boost, as radiography post-processing does: squash the
    # large-scale trend (body thickness), keep edges and organ-scale contrast.
    fill = np.where(exposed, logs, np.float32(med)).astype(np.float32)
    fill = np.minimum(fill, np.float32(med + 2.5))
    sigma = max(r.shape) / 24.0
    low = cv2.GaussianBlur(fill, (0, 0), sigma)
    proc = logs + np.float32(detail) * (logs - low) - np.float32(compress) * (low - med)
    pv = proc[exposed & (r < 65000.0)]
    pv = pv[pv < np.percentile(pv, 99.9) - 0.0] if pv.size > 100 else pv
    bodyp = pv[vals_mask_body(pv, med)]
    if bodyp.size < 0.2 * pv.size:
        bodyp = pv
    lo, hi = np.percentile(bodyp, [0.5, 99.5])
    del body
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    out = (hi - proc) / (hi - lo)
    out = np.clip(out, 0.0, 1.0) ** 0.9
    img = np.rint(out * 255.0).astype(np.uint8)
    if shutter:
        img[~exposed] = 0
    return np.asarray(img, dtype=np.uint8)
