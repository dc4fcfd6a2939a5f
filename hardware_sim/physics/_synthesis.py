"""Fast synthesis, precompute: each grid pixel's polychromatic response to iodine as a 3-node
Gauss quadrature, and the fast path's cached data (backgrounds, layouts; see :mod:`.imaging`)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ._exact import SpectralWeights
from ._geometry import ViewMaps
from ._params import TechniqueParams
from .detector import apply_lsf
from .xray import air_kerma_ugy_per_mas

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# whole-body iodine: cached per concentration in the fast path (see the module docstring)
BACKGROUND_COMPARTMENTS = ("interstitial", "plasma")
GAUSS_NODES = 3
BACKGROUND_EXPONENT_STEP = 2e-3  # quantisation of the background exponent (error ≤ half)


@dataclass
class Background:
    """Per (interstitial, plasma, mAs): everything that does not change with the compartments."""

    amp: F32  # (3, gr, gc) signal weights × e^(−x t_bg) × mAs  (keV)
    var: F32  # (3, gr, gc) variance weights × e^(−x t_bg) × mAs  (keV²)
    kerma: F32  # (3, roi) kerma weights × e^(−x t_bg) × mAs  (µGy)
    kerma_mean: float  # detector kerma without compartment iodine (µGy)
    primary: F32  # Σ amp
    var_primary: F32  # Σ var
    signal: F32  # light-spread primary + scatter
    detail: F32 | None  # panel-resolution detail to add to the upsampled signal (or None)
    variance: F32  # var_primary + scatter × its mean energy
    layouts: OrderedDict[LayoutKey, Layout] = field(default_factory=OrderedDict)


Dense = list[tuple[tuple[slice, slice], F32]]  # (bounding box, iodine mg/cm² over it)
LayoutKey = tuple[tuple[tuple[int, int, int, int], ...], tuple[str, ...]]


@dataclass
class Window:
    """A rectangle of the grid holding dense compartments (padded for the light spread,
    aligned to the scatter blocks), with contiguous copies of the arrays read there."""

    rect: tuple[slice, slice]
    negx: F32  # (3, h, w)
    amp: F32
    var: F32
    neg_primary: F32  # (h, w)
    neg_var_primary: F32
    spr: F32
    kerma_roi: tuple[tuple[slice, slice], tuple[slice, slice]] | None  # (in window, in ROI)
    t: F32 = field(init=False)  # per-frame work arrays (iodine, changes, scratch)
    dp: F32 = field(init=False)
    dv: F32 = field(init=False)
    e: F32 = field(init=False)

    def __post_init__(self) -> None:
        shape = self.neg_primary.shape
        self.t, self.dp, self.dv, self.e = (np.empty(shape, np.float32) for _ in range(4))


@dataclass
class Thin:
    """A thin compartment (a ureter): its pixels outside every window, evaluated as a list;
    those inside a window are routed into that window's iodine map."""

    comp: str
    keep: npt.NDArray[np.intp]  # positions (in the ureter's pixel list) outside the windows
    index: npt.NDArray[np.intp]  # their flat grid index
    box: tuple[slice, slice]  # their bounding box, padded for the light spread
    local: npt.NDArray[np.intp]  # their flat index inside ``box``
    negx: F32  # (3, m)
    amp: F32
    var: F32
    neg_primary: F32  # (m,)
    neg_var_primary: F32
    spr: F32
    block: npt.NDArray[np.intp] | None  # flat scatter-grid block of each pixel
    kerma: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F32] | None  # (pos, ROI idx, K')
    routes: list[tuple[int, npt.NDArray[np.intp], npt.NDArray[np.intp]]]  # (window, pos, idx)


@dataclass
class Layout:
    windows: list[Window]
    dense_window: list[int]  # window of each dense term, in order
    thin: list[Thin]


@dataclass
class Synthesis:
    """Per (view, technique): the Gauss-quadrature response to iodine (fast path)."""

    negx: F32  # (3, gr, gc) −x_j: the nodes, per mg/cm² of iodine
    amp: F32  # (3, gr, gc) signal weights A_j, keV per mAs (collimation included)
    var: F32  # (3, gr, gc) variance weights, keV² per mAs
    kerma: F32  # (3, roi) kerma weights, µGy per mAs per ROI pixel
    scatter_energy_kev: float
    scatter_scale: float  # × the view's SPR map (kV, grid)
    detail_blurred: F32 | None  # LSF ⊗ R − 1 at the panel's pixels (see _detail), or None
    air_kerma_1m_ugy_per_mas: float
    steps: dict[str, float]  # background concentration quantum (mg/mL) per compartment
    backgrounds: OrderedDict[tuple[int, int, float], Background] = field(
        default_factory=OrderedDict
    )


# ---------------------------------------------------------------------------------------------
# fast path: Gauss quadrature of each pixel's iodine-attenuation spectrum
# ---------------------------------------------------------------------------------------------
def gauss_nodes(w: F64, mu: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """3-point Gauss nodes (3, n), ascending, of the measures Σ_k w[k, i] δ(µ − µ_k).

    Stieltjes recurrence for the Jacobi matrix, then its eigenvalues in closed form
    (trigonometric solution of the symmetric 3×3 case).  ``good`` is False where the measure
    is empty or (numerically) concentrated on fewer than 3 points; there the nodes are the
    mean µ and callers use one node.
    """
    m = mu[:, None]
    s0 = w.sum(axis=0)
    p = w / np.where(s0 > 0, s0, 1.0)
    a0 = (p * m).sum(axis=0)
    q1 = m - a0
    n1 = (p * q1 * q1).sum(axis=0)
    tiny = 1e-300
    a1 = (p * m * q1 * q1).sum(axis=0) / np.maximum(n1, tiny)
    q2 = (m - a1) * q1 - n1
    n2 = (p * q2 * q2).sum(axis=0)
    a2 = (p * m * q2 * q2).sum(axis=0) / np.maximum(n2, tiny)
    scale = np.maximum(a0 * a0, tiny)
    good = (s0 > 0) & (n1 > 1e-12 * scale) & (n2 > 1e-12 * n1 * scale)
    b1 = n1
    b2 = n2 / np.maximum(n1, tiny)
    q = (a0 + a1 + a2) / 3.0
    d0, d1, d2 = a0 - q, a1 - q, a2 - q
    pp = np.sqrt(np.maximum((d0 * d0 + d1 * d1 + d2 * d2 + 2.0 * (b1 + b2)) / 6.0, tiny))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        det = (d0 * (d1 * d2 - b2) - b1 * d2) / pp**3  # of (J − q)/pp; NaN where not good
    phi = np.arccos(np.clip(np.nan_to_num(det) / 2.0, -1.0, 1.0)) / 3.0
    hi = q + 2.0 * pp * np.cos(phi)
    lo = q + 2.0 * pp * np.cos(phi + 2.0 * math.pi / 3.0)
    nodes = np.stack([lo, 3.0 * q - hi - lo, hi])
    nodes[:, ~good] = a0[~good]
    return nodes, good


def interpolatory_weights(values: F64, mu: F64, nodes: F64, good: npt.NDArray[np.bool_]) -> F64:
    """Weights c_j with Σ_j c_j e^(−x_j t) ≈ Σ_k values_k e^(−µ_k t): c_j = Σ_k values_k·ℓ_j(µ_k),
    ℓ_j the Lagrange basis on the nodes (for the measure's own Gauss nodes these are the
    Gauss weights).  One node (the first) where not ``good``."""
    m = mu[:, None]
    out = np.zeros((GAUSS_NODES, values.shape[1]))
    safe = np.where(good, 1.0, 0.0)
    for j in range(GAUSS_NODES):
        i1, i2 = (i for i in range(GAUSS_NODES) if i != j)
        den = (nodes[j] - nodes[i1]) * (nodes[j] - nodes[i2])
        den = np.where(good, den, 1.0)
        ell = (m - nodes[i1]) * (m - nodes[i2]) / den
        out[j] = (values * ell).sum(axis=0) * safe
    out[0] += values.sum(axis=0) * (1.0 - safe)
    return out


def fit_synthesis(
    w: SpectralWeights, roi: tuple[slice, slice], chunk: int = 16384
) -> tuple[F32, F32, F32, F32]:
    """(−nodes, signal weights, variance weights, ROI kerma weights) per grid pixel."""
    nb, gr, gc = w.signal.shape
    mu = np.asarray(w.iodine_k, dtype=np.float64)
    energy = np.asarray(w.energies, dtype=np.float64)[:, None]
    flat = w.signal.reshape(nb, -1)
    n = flat.shape[1]
    nodes = np.empty((GAUSS_NODES, n))
    good = np.empty(n, dtype=bool)
    amp = np.empty((GAUSS_NODES, n), np.float32)
    var = np.empty((GAUSS_NODES, n), np.float32)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        sig = flat[:, sl].astype(np.float64)
        nd, ok = gauss_nodes(sig, mu)
        nodes[:, sl], good[sl] = nd, ok
        amp[:, sl] = interpolatory_weights(sig, mu, nd, ok)
        var[:, sl] = interpolatory_weights(sig * energy, mu, nd, ok)
    nodes_roi = nodes.reshape(GAUSS_NODES, gr, gc)[:, roi[0], roi[1]]
    good_roi = good.reshape(gr, gc)[roi]
    kerma = interpolatory_weights(
        w.kerma_roi.astype(np.float64),
        mu,
        nodes_roi.reshape(GAUSS_NODES, -1),
        good_roi.reshape(-1),
    ).reshape(nodes_roi.shape)
    negx = (-nodes).astype(np.float32).reshape(GAUSS_NODES, gr, gc)
    return (
        negx,
        amp.reshape(GAUSS_NODES, gr, gc),
        var.reshape(GAUSS_NODES, gr, gc),
        kerma.astype(np.float32),
    )


# ---------------------------------------------------------------------------------------------


def build_synthesis(
    vm: ViewMaps, w: SpectralWeights, t: TechniqueParams, lsf: F32 | None = None
) -> Synthesis:
    """The per-(view, technique) precompute of the fast path from the spectral weights
    (``lsf``: the panel's light-spread kernel, for the detail)."""
    blurred = None
    if w.detail is not None:
        blurred = apply_lsf(w.detail, lsf) - np.float32(1.0)
    negx, amp, var, kerma = fit_synthesis(w, vm.roi)
    xmax = float(-negx.min()) if negx.size else 0.0
    steps: dict[str, float] = {}
    for comp in BACKGROUND_COMPARTMENTS:
        lmap = vm.iodine.get(comp)
        lmax = float(lmap.max()) if lmap is not None and lmap.size else 0.0
        sens = xmax * 0.1 * lmax  # exponent per mg/mL
        steps[comp] = BACKGROUND_EXPONENT_STEP / sens if sens > 0 else math.inf
    k1m = air_kerma_ugy_per_mas(t.kvp, t.filtration_mm_al, t.filtration_mm_cu)
    return Synthesis(
        negx, amp, var, kerma, w.scatter_energy_kev, w.scatter_scale, blurred, k1m, steps
    )
