"""The exact polychromatic path: bin-by-bin spectral weights of a view and the frame's mean,
variance and detector kerma from them; :func:`slab_signal` for flat slabs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._detail import (
    DetailMaps,
    detail_ratio,
    energy_groups,
    heel_angles,
    heel_extra_path,
    heel_factor_of_path,
)
from ._geometry import ViewMaps
from ._params import TechniqueParams
from ._scatter import scatter
from .detector import DetectorModel
from .grid import SPR_KV_EXPONENT, Grid
from .xray import binned_spectrum, iodine_mu_per_mg_cm2, kerma_ugy_per_photon_mm2, mu_per_mm

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass
class SpectralWeights:
    energies: F64
    signal: F32  # (bins, gr, gc): keV absorbed per full-res pixel per mAs, tissue only
    kerma_roi: F32  # (bins, roi pixels): µGy per mAs behind the tissue in the ROI
    iodine_k: F64  # exponent per mg/cm² iodine, per bin
    scatter_energy_kev: float
    scatter_scale: float  # × the view's no-grid 80 kVp SPR: kV dependence and grid T_s/T_p
    detail: F32 | None = None  # rows×cols native-pitch detail ratio R (see _detail), or None


def grid_factors(vm: ViewMaps, t: TechniqueParams, grid: Grid | None) -> tuple[F64, float]:
    """(T_p per energy bin, SPR scale): the grid's primary transmission and the factor that
    turns the view's no-grid SPR at 80 kVp into this technique's SPR behind the grid (T_s/T_p
    averaged over the spectrum behind the view's median thickness, detector-weighted)."""
    e, n = binned_spectrum(t.kvp, t.filtration_mm_al, t.filtration_mm_cu)
    kv = (t.kvp / 80.0) ** SPR_KV_EXPONENT
    if grid is None:
        return np.ones(len(e)), kv
    tp = grid.primary_transmission(e)
    ts = grid.scatter_transmission(e)
    behind = n * e * np.exp(-mu_per_mm("water", e) * 10.0 * vm.median_mass_g_cm2)
    w = behind / max(float(behind.sum()), 1e-300)
    return tp, kv * float(np.sum(w * ts)) / float(np.sum(w * tp))


def spectral_weights(
    det: DetectorModel,
    vm: ViewMaps,
    t: TechniqueParams,
    grid: Grid | None = None,
    detail: DetailMaps | None = None,
) -> SpectralWeights:
    """Energy-resolved tissue transmission × fluence × heel × grid × detector weight of a view
    (per mAs), and the native-pitch detail ratio from ``detail``."""
    e, n = binned_spectrum(t.kvp, t.filtration_mm_al, t.filtration_mm_cu)
    tp, spr_scale = grid_factors(vm, t, grid)
    n = n * tp  # detector input behind the grid
    ew = det.energy_weights(e)
    kph = kerma_ugy_per_photon_mm2(e)
    mus = {name: mu_per_mm(name, e) for name in vm.materials}
    sig = np.empty((len(e), vm.grid_rows, vm.grid_cols), np.float32)
    kr = []
    heel_path = heel_extra_path(heel_angles(vm))
    for k in range(len(e)):
        expo = np.zeros((vm.grid_rows, vm.grid_cols), np.float32)
        for name, arr in vm.materials.items():
            expo += np.float32(mus[name][k]) * arr
        trans = np.exp(-expo)
        trans *= vm.field_grid
        trans *= vm.grid_cutoff
        trans *= heel_factor_of_path(float(e[k]), t.kvp, heel_path).astype(np.float32)
        sig[k] = np.float32(n[k] * ew[k]) * vm.fluence_factor * trans
        # kerma behind the patient per mAs (µGy), per ROI pixel; fluence per mm² at r
        area = np.float32(det.pixel_mm**2)
        kr.append(
            (np.float32(n[k] * kph[k]) * vm.fluence_factor[vm.roi] / area * trans[vm.roi])
            .ravel()
            .astype(np.float32)
        )
    # mean absorbed energy behind ~20 cm of tissue (for the scatter's noise)
    tot = sig.reshape(len(e), -1).sum(axis=1)
    se = float(np.sum(tot * e) / max(float(np.sum(tot)), 1e-30))
    ratio = None
    if detail is not None:
        behind = n * ew * np.exp(-mu_per_mm("water", e) * 10.0 * vm.median_mass_g_cm2)
        mu, gw = energy_groups(set(detail.native) | set(detail.coarse), e, behind)
        ratio = detail_ratio(detail, mu, gw, det.rows, det.cols)
    return SpectralWeights(e, sig, np.stack(kr), iodine_mu_per_mg_cm2(e), se, spr_scale, ratio)


def exact_grid(
    vm: ViewMaps,
    w: SpectralWeights,
    areal: F32,
    technique: TechniqueParams,
    scatter_to_primary: float,
) -> tuple[F32, F32, float, F32]:
    """(mean keV, variance keV², detector kerma µGy, primary keV) on the grid, bin by bin
    (iodine: ``areal`` mg/cm²)."""
    sig = np.zeros((vm.grid_rows, vm.grid_cols), np.float32)
    var = np.zeros_like(sig)
    roi_kerma = 0.0
    for k, e in enumerate(w.energies):
        att = np.exp(np.float32(-w.iodine_k[k]) * areal)
        contrib = w.signal[k] * att
        sig += contrib
        var += np.float32(e) * contrib
        roi_kerma += float(np.mean(w.kerma_roi[k] * att[vm.roi].ravel()))
    mas = np.float32(technique.mas)
    sig *= mas
    var *= mas
    primary = sig.copy()
    # scatter (low frequency): the view's SPR map × this technique's scale, spread widely
    if scatter_to_primary > 0:
        sc = scatter(vm, sig, w.scatter_scale)
        sig += sc
        var += sc * np.float32(w.scatter_energy_kev)
    return sig, var, roi_kerma * float(technique.mas), primary


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
