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

Scatter and grid (:mod:`.grid`): the no-grid scatter-to-primary ratio of each ray's mass
thickness, the field size and the kV (a fit to published SPRs of water phantoms), spread by a
broad Gaussian (σ 40 mm); behind a focused linear grid (``grid=``, default 12:1, 40 lines/cm,
focused at 115 cm; ``grid=None`` for a grid-less room) the primary is multiplied per energy bin
by the grid's T_p(E) and per ray by its geometric cut-off (tube angled across the strips or
off the focal distance), the scatter by T_s/T_p.

Fast synthesis (``ImagingChain(fast=True)``, the default).  The first render of a (view,
technique) takes the exact path above (a one-off view, e.g. a tomography projection, pays no
precompute); from the second on, a per-(view, technique) precompute (≈ 0.35 s at 1024², 0.07 s
at 512², kept in the same LRU as the view) makes a frame a weighted sum, a few exponentials
and noise: ≈ 4.5 ms per 1024² frame and ≈ 1.3 ms per 512² frame on one core, against ≈ 67 /
16 ms exact (``bench/bench_synthesis.py``).

* Polychromatic response to iodine.  Per grid pixel the detector signal behind iodine of areal
  density t is S(t) = Σ_k W_k e^(−µ_k t) (W_k: tissue-filtered fluence × detector energy
  weight, µ_k: iodine per mg/cm², k over the energy bins), the Laplace transform of the pixel's
  own measure over µ.  It is replaced by that measure's 3-node Gauss quadrature,
  S(t) ≈ Σ_j A_j e^(−x_j t), nodes x_j and weights A_j per pixel (Stieltjes recurrence, Jacobi
  matrix eigenvalues in closed form).  This matches the first six moments of µ, so the cumulant
  expansion ln S = ln S0 − ⟨µ⟩t + Var(µ)t²/2 − … is exact to t⁵; beam hardening is built in
  (a 2nd-order cumulant fit alone is 6 % off at 100 mg/cm² and turns unphysical beyond), and the
  response stays a positive, decreasing, convex sum of exponentials at any t.  Error against
  the bins over the pixels of a KUB view, 60–110 kVp: < 2e-4 at 100 mg/cm², 6e-4 at 130 (the
  densest bladder at 15 min), 0.5 % at 200, 2.5 % at 300.  The quantum variance
  Σ_k E_k W_k e^(−µ_k t) and the ROI detector kerma use the same nodes with their own
  interpolatory weights (0.6 % at 130 mg/cm²; iodine hardens the beam, raising the absorbed
  energy per quantum by ~8 % there, which is kept).
* Background iodine.  Interstitial and plasma iodine cover the whole body and change slowly:
  A_j·e^(−x_j t_bg) and the resulting primary, scatter and variance are cached per
  (interstitial, plasma, mAs), each concentration quantised so that the exponent moves by
  ≤ 1e-3 (≤ 0.1 % in signal; a 30 fps run rebuilds it about once per 200 frames, ~10 ms).
* Per frame only the compartments with their own maps are evaluated: kidneys, calyces and
  bladder in windows around them (disjoint rectangles with contiguous copies of the arrays
  read there), ureters (thin, diagonal) as lists of their pixels, with the peristaltic boluses
  of the exact path.  Scatter is linear in the primary: the cached background scatter plus the
  scatter of the primary's change (same kernel as the exact path).
* Detector: the light spread is applied to the mean on the grid (σ/2 there; the exact path
  blurs after upsampling: ~0.3 % pixel-level differences at bone edges, none on average) and
  to the noise through pre-blurred noise from a :class:`~.detector.NoiseBank` (frames reuse
  shifted windows of 1.5 frames of noise, and the electronic noise is folded into the same
  field: see the caveats there; ``noise_bank=False`` draws fresh noise with white electronic
  noise).  Variance ∝ Σ E² per pixel (Poisson in quanta), gain, offset, defects as
  :meth:`DetectorModel.read_out`.  The collimation is applied on the grid, so its edge is a
  2-px ramp instead of a sharp edge blurred by σ 0.7 px.

Fast vs exact, KUB at 15 min after 15 g iodine (tests/physics/test_synthesis.py): mean signal
in the body −0.04 % on average and 0.3 % (512²) / 0.1 % (1024²) pixel by pixel, 99th
percentile 2.6 % / 1.4 % (bone edges); densest iodine (129 mg/cm², bladder) +0.05 %; detector
kerma 1e-4; noise σ in soft tissue, bone and bladder within 2 %.

The fast path reuses per-chain buffers: an ImagingChain is not for concurrent use by threads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import cv2
import numpy as np
import numpy.typing as npt

from ._detail import DetailMaps, build_detail
from ._display import to_display, vals_mask_body
from ._exact import SpectralWeights, exact_grid, slab_signal, spectral_weights
from ._fast import FastPath
from ._geometry import (
    DETECTOR_BELOW_TABLE_MM,
    INTERSTITIAL_FRACTION,
    POSITION_ANGLES_DEG,
    TISSUE_PLASMA_FRACTION,
    Frame,
    ViewMaps,
    bbox,
    build_view,
    chords,
    resolve,
)
from ._iodine import (
    PERISTALSIS_PER_MIN,
    URETER_BASELINE_FILL,
    URETER_BOLUS_HALF_LENGTH_MM,
    URETER_BOLUS_SPEED_MM_S,
    VOLUME_COMPARTMENTS,
    iodine_areal_mg_cm2,
    ureter_areal,
)
from ._lru import trim
from ._params import RenderedImage, TechKey, TechniqueParams, ViewGeometry, tech_key
from ._scatter import dose, scatter, scatter_blocks
from ._synthesis import (
    BACKGROUND_COMPARTMENTS,
    BACKGROUND_EXPONENT_STEP,
    GAUSS_NODES,
    Synthesis,
    build_synthesis,
    fit_synthesis,
    gauss_nodes,
    interpolatory_weights,
)
from .detector import DetectorModel, NoiseBank, apply_lsf
from .grid import Grid
from .phantom import Phantom
from .xray import binned_spectrum, kerma_ugy_per_photon_mm2

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]

__all__ = [
    "BACKGROUND_COMPARTMENTS",
    "BACKGROUND_EXPONENT_STEP",
    "DETECTOR_BELOW_TABLE_MM",
    "GAUSS_NODES",
    "INTERSTITIAL_FRACTION",
    "PERISTALSIS_PER_MIN",
    "POSITION_ANGLES_DEG",
    "STANDARD_GRID",
    "TISSUE_PLASMA_FRACTION",
    "URETER_BASELINE_FILL",
    "URETER_BOLUS_HALF_LENGTH_MM",
    "URETER_BOLUS_SPEED_MM_S",
    "VOLUME_COMPARTMENTS",
    "ImagingChain",
    "RenderedImage",
    "TechniqueParams",
    "ViewGeometry",
    "slab_signal",
    "to_display",
    "vals_mask_body",
]

# The implementation lives in private modules: _params (ViewGeometry, TechniqueParams,
# RenderedImage), _geometry (frames, chords, bounding boxes, view maps), _iodine (compartment
# iodine), _scatter (scatter, dose), _exact (spectral weights, exact path, slab_signal),
# _synthesis / _layout / _fast (fast synthesis), _display (to_display), _lru (cache eviction).
# Former private names of this module, kept importable from here:
_Frame = Frame
_ViewMaps = ViewMaps
_SpectralWeights = SpectralWeights
_Synthesis = Synthesis
_TechKey = TechKey
_resolve = resolve
_chords = chords
_bbox = bbox
_tech_key = tech_key
_scatter_blocks = scatter_blocks
_gauss_nodes = gauss_nodes
_interpolatory_weights = interpolatory_weights
_fit_synthesis = fit_synthesis

#: The room's bucky grid: 12:1, 40 lines/cm, 36 µm lead, aluminium interspace, focused at the
#: standard 115 cm SID, strips along the table (see :mod:`.grid` for the literature).
STANDARD_GRID = Grid()


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
        scatter: bool = True,
        grid: Grid | None = STANDARD_GRID,
        view_cache_size: int = 4,
        fast: bool = True,
        noise_bank: bool = True,
    ) -> None:
        #: set while a tomosynthesis sweep renders its projections (:func:`.tomo.acquire_sweep`):
        #: they skip the native-pitch detail, which shift-and-add blurs away in every plane
        #: but the layer's, and which would cost each of the sweep's 25 new views ~0.2 s
        self.sweeping = False
        """``fast``: synthesise repeat frames of a (view, technique) from a precompute (see the
        module docstring); ``noise_bank``: in the fast path take the noise from a
        pre-generated bank (else fresh noise per frame); ``scatter``: add scattered radiation;
        ``grid``: the anti-scatter grid in front of the panel, None for none."""
        self.phantom = phantom
        self.detector = detector
        self.seed = seed
        self.grid = grid
        # 1.0/0.0: scatter on/off for the paths (the SPR itself comes from the view and grid)
        self.scatter_to_primary = 1.0 if scatter else 0.0
        self.fast = fast
        self.noise_bank = noise_bank
        self._views: OrderedDict[ViewGeometry, ViewMaps] = OrderedDict()
        self._weights: OrderedDict[TechKey, SpectralWeights] = OrderedDict()
        self._synth: OrderedDict[TechKey, Synthesis] = OrderedDict()
        self._seen: OrderedDict[TechKey, None] = OrderedDict()
        self._cache_size = view_cache_size
        self._counter = 0
        self._grid_factor = 2 if max(detector.rows, detector.cols) > 256 else 1
        self._bank: NoiseBank | None = None
        self._fastpath = FastPath(phantom, detector, self.scatter_to_primary, noise_bank)

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
        key = tech_key(geometry, technique)
        syn = self._synth.get(key) if self.fast else None
        if syn is None and self.fast and key in self._seen:
            syn = self._synthesis(geometry, vm, technique)  # seen before: worth a precompute
        if syn is not None:
            self._synth.move_to_end(key)
            return self._render_fast(geometry, vm, syn, technique, iodine_mg_ml, volumes_ml, time_s)
        self._seen[key] = None
        trim(self._seen, 4 * self._cache_size)
        full_sig, full_var, roi_kerma = self._exact_full(
            geometry, vm, technique, iodine_mg_ml, volumes_ml, time_s
        )
        det = self.detector
        rng = np.random.default_rng([self.seed, self._counter])
        self._counter += 1
        pixels = det.read_out(full_sig, full_var, rng)
        return RenderedImage(
            pixels=pixels,
            pixel_spacing_mm=det.pixel_mm,
            **self._dose(geometry, vm, technique),
            detector_kerma_ugy=roi_kerma,
        )

    def mean_signal(
        self,
        geometry: ViewGeometry,
        technique: TechniqueParams,
        iodine_mg_ml: Mapping[str, float],
        volumes_ml: Mapping[str, float] | None = None,
        time_s: float = 0.0,
        *,
        method: str = "fast",
    ) -> tuple[F32, float]:
        """The noise-free frame: (mean absorbed energy per panel pixel in keV, after the light
        spread and before gain/offset; detector kerma in µGy), by the ``"exact"`` bin-by-bin
        path or the ``"fast"`` synthesis (for checking one against the other)."""
        if technique.mas < 0:
            raise ValueError("mAs must be ≥ 0")
        vm = self._view(geometry)
        det = self.detector
        if method == "exact":
            full, _, kerma = self._exact_full(
                geometry, vm, technique, iodine_mg_ml, volumes_ml, time_s
            )
            return apply_lsf(full, det.lsf_kernel()), kerma
        if method != "fast":
            raise ValueError(f"method must be 'fast' or 'exact', not {method!r}")
        key = tech_key(geometry, technique)
        syn = self._synth.get(key) or self._synthesis(geometry, vm, technique)
        sig_g, _, kerma = self._fastpath.grid(vm, syn, technique, iodine_mg_ml, volumes_ml, time_s)
        full = np.asarray(
            cv2.resize(sig_g, (det.cols, det.rows), interpolation=cv2.INTER_LINEAR), np.float32
        )
        if self._fastpath.detail is not None:
            full += self._fastpath.detail
        return full, kerma

    def detector_kerma_per_mas(
        self,
        geometry: ViewGeometry,
        technique: TechniqueParams,
        iodine_mg_ml: Mapping[str, float],
        volumes_ml: Mapping[str, float] | None = None,
        time_s: float = 0.0,
    ) -> tuple[F32, F32, F32]:
        """Air kerma at the panel (behind the grid, primary + scatter) in µGy per mAs on the ray
        grid, with the grid's column and row coordinates (mm from the panel centre): what an
        ionisation chamber in front of the panel reads (``hardware_sim/aec.py``)."""
        vm = self._view(geometry)
        w = self._spectral(geometry, vm, technique)
        areal = self._iodine_areal_mg_cm2(vm, iodine_mg_ml, volumes_ml, time_s)
        e, _ = binned_spectrum(
            technique.kvp, technique.filtration_mm_al, technique.filtration_mm_cu
        )
        per_kev = kerma_ugy_per_photon_mm2(e) / np.maximum(self.detector.energy_weights(e), 1e-30)
        area = self.detector.pixel_mm**2
        kerma = np.zeros((vm.grid_rows, vm.grid_cols), np.float32)
        for k in range(len(e)):
            att = np.exp(np.float32(-w.iodine_k[k]) * areal)
            kerma += np.float32(per_kev[k] / area) * w.signal[k] * att
        if self.scatter_to_primary > 0:
            kerma += scatter(vm, kerma, w.scatter_scale)
        return kerma, vm.u.astype(np.float32), vm.v.astype(np.float32)

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
        fr = resolve(self.phantom, geometry)
        rel = np.asarray(point_mm, dtype=float) - fr.source
        t = float((fr.det_centre - fr.source) @ fr.normal) / float(rel @ fr.normal)
        hit = fr.source + rel * t - fr.det_centre
        det = self.detector
        col = float(hit @ fr.ex) / det.pixel_mm + det.cols / 2.0 - 0.5
        row = float(hit @ fr.ey) / det.pixel_mm + det.rows / 2.0 - 0.5
        return row, col

    # -- views ----------------------------------------------------------------------------------
    def _view(self, g: ViewGeometry) -> ViewMaps:
        vm = self._views.get(g)
        if vm is not None:
            self._views.move_to_end(g)
            return vm
        vm = build_view(self.phantom, self.detector, g, self._grid_factor, self.grid)
        self._views[g] = vm
        trim(self._views, self._cache_size)
        return vm

    def _spectral(self, g: ViewGeometry, vm: ViewMaps, t: TechniqueParams) -> SpectralWeights:
        if self.sweeping:  # not cached: a radiograph of the same view wants the detail
            return spectral_weights(self.detector, vm, t, self.grid, None)
        key = tech_key(g, t)
        w = self._weights.get(key)
        if w is not None:
            self._weights.move_to_end(key)
            return w
        dm = self._detail(g, vm, t.focal_spot_mm)
        w = spectral_weights(self.detector, vm, t, self.grid, dm)
        self._weights[key] = w
        trim(self._weights, self._cache_size)
        return w

    def _detail(self, g: ViewGeometry, vm: ViewMaps, focal_spot_mm: float) -> DetailMaps | None:
        key = round(focal_spot_mm, 2)
        if key not in vm.detail:
            vm.detail[key] = build_detail(self.phantom, self.detector, vm, focal_spot_mm)
        return vm.detail[key]

    # -- exact path -----------------------------------------------------------------------------
    def _exact_full(
        self,
        g: ViewGeometry,
        vm: ViewMaps,
        technique: TechniqueParams,
        conc: Mapping[str, float],
        volumes: Mapping[str, float] | None,
        time_s: float,
    ) -> tuple[F32, F32, float]:
        """(mean keV, variance keV², detector kerma µGy) at the panel's pixels, before the
        light spread: the grid upsampled, the native-pitch detail on the primary."""
        w = self._spectral(g, vm, technique)
        areal = self._iodine_areal_mg_cm2(vm, conc, volumes, time_s)
        sig, var, kerma, primary = exact_grid(vm, w, areal, technique, self.scatter_to_primary)
        det = self.detector
        size = (det.cols, det.rows)
        full_sig = np.asarray(cv2.resize(sig, size, interpolation=cv2.INTER_LINEAR), np.float32)
        full_var = np.asarray(cv2.resize(var, size, interpolation=cv2.INTER_LINEAR), np.float32)
        if w.detail is not None:
            up = cv2.resize(primary, size, interpolation=cv2.INTER_LINEAR)
            full_sig += up * (w.detail - np.float32(1.0))
        full_sig *= vm.field_full
        full_var *= vm.field_full
        return full_sig, full_var, kerma

    def _exact_grid(
        self,
        g: ViewGeometry,
        vm: ViewMaps,
        technique: TechniqueParams,
        conc: Mapping[str, float],
        volumes: Mapping[str, float] | None,
        time_s: float,
    ) -> tuple[F32, F32, float]:
        """(mean keV, variance keV², detector kerma µGy) on the grid, bin by bin."""
        w = self._spectral(g, vm, technique)
        areal = self._iodine_areal_mg_cm2(vm, conc, volumes, time_s)
        sig, var, kerma, _ = exact_grid(vm, w, areal, technique, self.scatter_to_primary)
        return sig, var, kerma

    # -- fast path ------------------------------------------------------------------------------
    def _synthesis(self, g: ViewGeometry, vm: ViewMaps, t: TechniqueParams) -> Synthesis:
        key = tech_key(g, t)
        syn = build_synthesis(vm, self._spectral(g, vm, t), t, self.detector.lsf_kernel())
        self._synth[key] = syn
        trim(self._synth, self._cache_size)
        return syn

    def _render_fast(
        self,
        geometry: ViewGeometry,
        vm: ViewMaps,
        syn: Synthesis,
        technique: TechniqueParams,
        conc: Mapping[str, float],
        volumes: Mapping[str, float] | None,
        time_s: float,
    ) -> RenderedImage:
        det = self.detector
        sig_g, std_g, kerma = self._fastpath.grid(vm, syn, technique, conc, volumes, time_s)
        sig = self._fastpath.scratch("sig_full", (det.rows, det.cols))
        std = self._fastpath.scratch("std_full", (det.rows, det.cols))
        cv2.resize(sig_g, (det.cols, det.rows), dst=sig, interpolation=cv2.INTER_LINEAR)
        cv2.resize(std_g, (det.cols, det.rows), dst=std, interpolation=cv2.INTER_LINEAR)
        if self._fastpath.detail is not None:
            cv2.add(sig, self._fastpath.detail, dst=sig)
        key = self._counter
        self._counter += 1
        read: F32 | None = None
        if self.noise_bank:  # electronic noise folded into std (see _background)
            if self._bank is None:
                self._bank = NoiseBank(det, self.seed)
            quantum = self._bank.draw(key)
        else:
            quantum, read = det.synthesis_noise(np.random.default_rng([self.seed, key, 0xFA57]))
        pixels = det.read_out_synthesised(sig, std, self._fastpath.counts_gain(), quantum, read)
        return RenderedImage(
            pixels=pixels,
            pixel_spacing_mm=det.pixel_mm,
            **self._dose(geometry, vm, technique, syn.air_kerma_1m_ugy_per_mas),
            detector_kerma_ugy=kerma,
        )

    # -- per frame --------------------------------------------------------------------------------
    def _iodine_areal_mg_cm2(
        self,
        vm: ViewMaps,
        conc: Mapping[str, float],
        volumes: Mapping[str, float] | None,
        time_s: float,
    ) -> F32:
        """Σ_c C_c·L_c in mg/cm² on the grid (C mg/mL = mg/cm³; L mm → cm)."""
        return iodine_areal_mg_cm2(self.phantom, vm, conc, volumes, time_s)

    def _ureter_areal(
        self, vm: ViewMaps, comp: str, c: float, vols: Mapping[str, float], time_s: float
    ) -> F32:
        return ureter_areal(self.phantom, vm, comp, c, vols, time_s)

    def _dose(
        self,
        g: ViewGeometry,
        vm: ViewMaps,
        t: TechniqueParams,
        k1m_per_mas: float | None = None,
    ) -> dict[str, float]:
        return dose(self.detector, g, vm, t, k1m_per_mas)
