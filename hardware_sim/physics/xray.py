"""Polychromatic X-ray physics: tube spectra, attenuation coefficients and air kerma.

* Spectra come from SpekPy 2.5.4 (tungsten anode, 12° target angle) [S125]: photons per keV per
  cm² per mAs at 100 cm, converted here to photons per mm² per mAs per 1-keV bin.  They are cached
  per (kVp, filtration) because SpekPy takes ~0.3 s per call, in memory and on disk between
  processes (:mod:`._diskcache`), as are the attenuation tables.
* Linear attenuation coefficients are built from xraydb 4.5.8 elemental mass attenuation
  (``mu_elam``, Elam tables) [S124] and ICRU-44/46 mass-fraction compositions, as in the research
  note §5.1 (soft tissue = ICRU-44 skeletal muscle, adipose, cortical bone, kidney, blood).
* Air kerma uses the energy-transfer coefficient of air: photoabsorption plus the Klein–Nishina
  mean energy-transfer fraction of incoherent scattering (fluorescence and bremsstrahlung losses
  in air are negligible below 150 keV).  At 75 kVp / 2.5 mm Al this gives ≈ 73 µGy/mAs at 1 m,
  the note's §5.2 figure.

Units: energies in keV, lengths in mm, µ in 1/mm unless a name says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ._diskcache import disk_cached

FloatArray = npt.NDArray[np.float64]

IODINE_K_EDGE_KEV = 33.169  # [S124]
KEV_TO_J = 1.602176634e-16
ELECTRON_REST_KEV = 510.99895


@dataclass(frozen=True)
class Material:
    """A material as mass fractions of elements and a density in g/cm³."""

    name: str
    density_g_cm3: float
    mass_fractions: tuple[tuple[str, float], ...]


def _mat(name: str, density: float, fractions: Mapping[str, float]) -> Material:
    total = sum(fractions.values())
    return Material(name, density, tuple((el, w / total) for el, w in fractions.items()))


# ICRU-44 cortical bone (mass %); trabecular bone reuses it at the spongiosa density.
_CORTICAL_BONE = {
    "H": 3.4, "C": 15.5, "N": 4.2, "O": 43.5, "Na": 0.1, "Mg": 0.2, "P": 10.3, "S": 0.3, "Ca": 22.5,
}  # fmt: skip

# ICRU-44 / ICRU-46 compositions (mass %), densities as in the research note §5.1 [S124].
MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        _mat(
            "soft_tissue",  # ICRU-44 skeletal muscle
            1.06,
            {
                "H": 10.2,
                "C": 14.3,
                "N": 3.4,
                "O": 71.0,
                "Na": 0.1,
                "P": 0.2,
                "S": 0.3,
                "Cl": 0.1,
                "K": 0.4,
            },
        ),
        _mat(
            "adipose",  # ICRU-44 adipose tissue
            0.95,
            {"H": 11.4, "C": 59.8, "N": 0.7, "O": 27.8, "Na": 0.1, "S": 0.1, "Cl": 0.1},
        ),
        _mat(
            "bone",  # ICRU-44 cortical bone
            1.92,
            _CORTICAL_BONE,
        ),
        _mat(
            "bone_trabecular",  # spongiosa: cortical composition at the ICRU spongiosa density
            1.18,
            _CORTICAL_BONE,
        ),
        _mat(
            "kidney",  # ICRU-44 kidney
            1.05,
            {
                "H": 10.3,
                "C": 13.2,
                "N": 3.0,
                "O": 72.4,
                "Na": 0.2,
                "P": 0.2,
                "S": 0.2,
                "Cl": 0.2,
                "K": 0.2,
                "Ca": 0.1,
            },
        ),
        _mat(
            "blood",  # ICRU-44 whole blood
            1.06,
            {
                "H": 10.2,
                "C": 11.0,
                "N": 3.3,
                "O": 74.5,
                "Na": 0.1,
                "P": 0.1,
                "S": 0.2,
                "Cl": 0.3,
                "K": 0.2,
                "Fe": 0.1,
            },
        ),
        _mat("urine", 1.02, {"H": 11.19, "O": 88.81}),  # water-like
        _mat("water", 1.0, {"H": 11.19, "O": 88.81}),
        _mat("air", 0.001205, {"C": 0.01, "N": 75.53, "O": 23.18, "Ar": 1.28}),
        # calcium oxalate monohydrate CaC2O4·H2O (a urinary stone)
        _mat("stone", 2.2, {"Ca": 27.4, "C": 16.4, "O": 54.8, "H": 1.4}),
        _mat("aluminium", 2.699, {"Al": 100.0}),
        _mat("copper", 8.96, {"Cu": 100.0}),
        _mat("lead", 11.35, {"Pb": 100.0}),  # anti-scatter grid strips
        _mat("tungsten", 19.3, {"W": 100.0}),  # anode (heel effect)
        # grid interspace of carbon-fibre / polymer (fibre-interspaced grids)
        _mat("fibre", 1.0, {"C": 85.0, "H": 7.0, "O": 8.0}),
        _mat("csi", 4.51, {"Cs": 51.15, "I": 48.85}),
    )
}


def _energy_key(energies_kev: npt.ArrayLike) -> tuple[float, ...]:
    return tuple(round(float(e), 6) for e in np.atleast_1d(np.asarray(energies_kev, dtype=float)))


@lru_cache(maxsize=512)
def _mass_atten_cached(element: str, energies: tuple[float, ...], kind: str) -> FloatArray:
    return _mu_elam(element, energies, kind)


@disk_cached("mu_elam", "xraydb")
def _mu_elam(element: str, energies: tuple[float, ...], kind: str) -> FloatArray:
    import xraydb  # slow import (SciPy); only when a table is not on disk yet

    e_ev = np.asarray(energies, dtype=float) * 1000.0
    out = np.asarray(xraydb.mu_elam(element, e_ev, kind=kind), dtype=float)
    out.setflags(write=False)
    return out


def mass_atten_cm2_g(element: str, energies_kev: npt.ArrayLike, kind: str = "total") -> FloatArray:
    """Elemental mass attenuation coefficient µ/ρ (cm²/g) from xraydb's Elam tables."""
    return _mass_atten_cached(element, _energy_key(energies_kev), kind)


@lru_cache(maxsize=256)
def _mu_cached(material: str, energies: tuple[float, ...], kind: str) -> FloatArray:
    mat = MATERIALS[material]
    mu_rho = np.zeros(len(energies))
    for element, w in mat.mass_fractions:
        mu_rho += w * _mass_atten_cached(element, energies, kind)
    out = mu_rho * mat.density_g_cm3 / 10.0  # 1/cm → 1/mm
    out.setflags(write=False)
    return out


def mu_per_mm(material: str, energies_kev: npt.ArrayLike, kind: str = "total") -> FloatArray:
    """Linear attenuation coefficient µ(E) of a named material in 1/mm (cached)."""
    if material not in MATERIALS:
        raise KeyError(f"unknown material {material!r}; known: {sorted(MATERIALS)}")
    return _mu_cached(material, _energy_key(energies_kev), kind)


def iodine_mass_atten_cm2_g(energies_kev: npt.ArrayLike) -> FloatArray:
    """Iodine µ/ρ (cm²/g), ``mu_elam('I', E)`` [S124]."""
    return mass_atten_cm2_g("I", energies_kev)


def iodine_mu_per_mg_cm2(energies_kev: npt.ArrayLike) -> FloatArray:
    """Attenuation exponent per mg/cm² of iodine areal density (dimensionless per mg/cm²)."""
    return iodine_mass_atten_cm2_g(energies_kev) * 1e-3


def _klein_nishina_transfer_fraction(energy_kev: float) -> float:
    """Mean fraction of photon energy given to the Compton electron (free-electron KN)."""
    k = energy_kev / ELECTRON_REST_KEV
    cos_t = np.linspace(-1.0, 1.0, 2001)
    ratio = 1.0 / (1.0 + k * (1.0 - cos_t))  # E'/E
    dsig = ratio**2 * (ratio + 1.0 / ratio - (1.0 - cos_t**2))
    sig = float(np.trapezoid(dsig, cos_t))
    tr = float(np.trapezoid(dsig * (1.0 - ratio), cos_t))
    return tr / sig


@lru_cache(maxsize=64)
def _mu_tr_air_cached(energies: tuple[float, ...]) -> FloatArray:
    mat = MATERIALS["air"]
    photo = np.zeros(len(energies))
    incoh = np.zeros(len(energies))
    for element, w in mat.mass_fractions:
        photo += w * _mass_atten_cached(element, energies, "photo")
        incoh += w * _mass_atten_cached(element, energies, "incoh")
    frac = np.array([_klein_nishina_transfer_fraction(e) for e in energies])
    out: FloatArray = photo + incoh * frac
    out.setflags(write=False)
    return out


def mu_tr_air_cm2_g(energies_kev: npt.ArrayLike) -> FloatArray:
    """Mass energy-transfer coefficient of air (cm²/g) ≈ µ_en/ρ below 150 keV."""
    return _mu_tr_air_cached(_energy_key(energies_kev))


def kerma_ugy_per_photon_mm2(energies_kev: npt.ArrayLike) -> FloatArray:
    """Air kerma (µGy) delivered by a fluence of 1 photon/mm² at each energy."""
    e = np.asarray(energies_kev, dtype=float)
    # photons/mm² → /cm² ×100; keV→J; per g → per kg ×1000; Gy → µGy ×1e6
    return 100.0 * e * KEV_TO_J * mu_tr_air_cm2_g(e) * 1000.0 * 1e6


@lru_cache(maxsize=64)
@disk_cached("spekpy", "spekpy")
def _spectrum_cached(kvp: float, al: float, cu: float) -> tuple[FloatArray, FloatArray]:
    import spekpy  # slow import; only when a spectrum is not on disk yet

    spek = spekpy.Spek(kvp=kvp, th=12.0, dk=1.0, targ="W")
    if al > 0:
        spek.filter("Al", al)
    if cu > 0:
        spek.filter("Cu", cu)
    k, flu = spek.get_spectrum()  # photons / (cm² keV mAs) at 100 cm, 1-keV bins
    energies = np.asarray(k, dtype=float)
    photons = np.asarray(flu, dtype=float) * 1.0 / 100.0  # × 1 keV bin, per cm² → per mm²
    photons = np.where(np.isfinite(photons) & (photons > 0), photons, 0.0)
    energies.setflags(write=False)
    photons.setflags(write=False)
    return energies, photons


def spectrum(
    kvp: float, filtration_mm_al: float = 2.5, filtration_mm_cu: float = 0.0
) -> tuple[FloatArray, FloatArray]:
    """(energies_keV, photons/(mm²·mAs) per 1-keV bin at 1 m) from SpekPy, W anode 12° [S125].

    Cached (kVp to 0.1 kV, filtration to 0.01 mm); the returned arrays are read-only.
    """
    if not 20.0 <= kvp <= 150.0:
        raise ValueError(f"kVp {kvp} outside 20–150")
    return _spectrum_cached(
        round(float(kvp), 1), round(float(filtration_mm_al), 2), round(float(filtration_mm_cu), 2)
    )


@lru_cache(maxsize=64)
def _binned_cached(
    kvp: float, al: float, cu: float, width_kev: float
) -> tuple[FloatArray, FloatArray]:
    e, n = _spectrum_cached(kvp, al, cu)
    keep = (n > 0) & (e >= 10.0)
    e, n = e[keep], n[keep]
    # Group edges: fixed widths, with one edge at the iodine K edge (33.169 keV falls in the
    # SpekPy 33–34 keV bin, whose centre 33.5 keV is above the edge; we keep it with the bins
    # above).
    edges = [10.0]
    x = 10.0
    while x < kvp + 1.0:
        w = width_kev if x < 60.0 else width_kev * 1.67
        nxt = x + w
        if x < 33.0 < nxt:
            edges.append(33.0)
            x = 33.0
            continue
        edges.append(nxt)
        x = nxt
    idx = np.digitize(e, edges)
    centres: list[float] = []
    counts: list[float] = []
    for b in np.unique(idx):
        sel = idx == b
        tot = float(n[sel].sum())
        if tot <= 0:
            continue
        centres.append(float((e[sel] * n[sel]).sum() / tot))
        counts.append(tot)
    ce = np.array(centres)
    co = np.array(counts)
    ce.setflags(write=False)
    co.setflags(write=False)
    return ce, co


def binned_spectrum(
    kvp: float,
    filtration_mm_al: float = 2.5,
    filtration_mm_cu: float = 0.0,
    width_kev: float = 3.0,
) -> tuple[FloatArray, FloatArray]:
    """The spectrum regrouped into ~15–25 bins (3 keV below 60 keV, 5 keV above).

    Returns (fluence-weighted mean energy of each bin in keV, photons/(mm²·mAs) at 1 m).
    """
    e, _ = spectrum(kvp, filtration_mm_al, filtration_mm_cu)
    del e
    return _binned_cached(
        round(float(kvp), 1),
        round(float(filtration_mm_al), 2),
        round(float(filtration_mm_cu), 2),
        float(width_kev),
    )


def air_kerma_ugy_per_mas(
    kvp: float,
    filtration_mm_al: float = 2.5,
    filtration_mm_cu: float = 0.0,
    distance_mm: float = 1000.0,
) -> float:
    """Free-in-air kerma per mAs (µGy/mAs) at ``distance_mm`` from the focal spot."""
    e, n = spectrum(kvp, filtration_mm_al, filtration_mm_cu)
    k1m = float(np.sum(n * kerma_ugy_per_photon_mm2(e)))
    return k1m * (1000.0 / distance_mm) ** 2


def mean_energy_kev(
    kvp: float, filtration_mm_al: float = 2.5, filtration_mm_cu: float = 0.0
) -> float:
    e, n = spectrum(kvp, filtration_mm_al, filtration_mm_cu)
    return float(np.sum(e * n) / np.sum(n))
