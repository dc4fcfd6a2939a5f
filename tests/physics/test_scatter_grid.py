"""Scatter and anti-scatter grid against published figures (hardware_sim/physics/grid.py).

Published ranges used (see docs/simulator-physics.md): no-grid SPR for water phantoms at a
30×30 cm field ≈ 1.5–2.5 at 10 cm, 3–6 at 20 cm, 6–10 at 30 cm, rising with field size and
weakly with kV; r 10–15 grids transmit T_p 0.55–0.75 of the primary and T_s 0.03–0.15 of the
scatter; a focused grid used at SID ≠ f₀ loses r·|x|·|1/f₀ − 1/SID| of the primary at x
(Pasciak & Jones 2009); angling across the strips by more than atan(1/r) cuts the primary off.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hardware_sim.physics import (
    DetectorModel,
    ImagingChain,
    PatientBuild,
    Phantom,
    TechniqueParams,
    ViewGeometry,
)
from hardware_sim.physics.grid import Grid, spr_no_grid
from hardware_sim.physics.xray import binned_spectrum, mu_per_mm

SMALL = DetectorModel(rows=128, cols=128, pixel_mm=3.336, seed=1)
TECH = TechniqueParams(kvp=80.0, mas=10.0)
KUB = ViewGeometry()


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return Phantom(PatientBuild(seed=1))


def centre(a: np.ndarray, half: int = 6) -> float:
    r, c = a.shape[0] // 2, a.shape[1] // 2
    return float(a[r - half : r + half, c - half : c + half].mean())


@pytest.mark.parametrize(("cm", "lo", "hi"), [(10, 1.5, 2.5), (20, 3.0, 6.0), (30, 6.0, 10.0)])
def test_no_grid_spr_of_water_within_the_published_range(cm: float, lo: float, hi: float) -> None:
    assert lo <= float(spr_no_grid(cm, 900.0, 80.0)) <= hi


def test_spr_rises_with_field_size_and_weakly_with_kv() -> None:
    small, large = float(spr_no_grid(20, 100.0, 80.0)), float(spr_no_grid(20, 1600.0, 80.0))
    assert small < 0.8 * large
    lo, hi = float(spr_no_grid(20, 900.0, 60.0)), float(spr_no_grid(20, 900.0, 120.0))
    assert 1.05 < hi / lo < 1.3


@pytest.mark.parametrize("kvp", [60.0, 80.0, 110.0])
def test_grid_primary_and_scatter_transmission_within_published_range(kvp: float) -> None:
    e, n = binned_spectrum(kvp)
    w = n * e * np.exp(-mu_per_mm("water", e) * 200.0)  # behind 20 cm water, energy-weighted
    grid = Grid()
    tp = float(np.sum(w * grid.primary_transmission(e)) / w.sum())
    ts = float(np.sum(w * grid.scatter_transmission(e)) / w.sum())
    assert 0.55 <= tp <= 0.75
    assert 0.03 <= ts <= 0.15
    # a higher ratio rejects more scatter
    assert float(np.sum(w * Grid(ratio=16.0).scatter_transmission(e))) < ts * w.sum()


def test_rendered_spr_behind_the_patient_with_and_without_grid(phantom: Phantom) -> None:
    # soft tissue 70 mm lateral to the spine (~21 cm of tissue; behind the vertebrae the
    # primary is lower and the SPR higher)
    r, c = SMALL.rows // 2, SMALL.cols // 2 + round(70.0 / SMALL.pixel_mm)

    def parts(grid: Grid | None) -> tuple[float, float]:
        total = ImagingChain(phantom, SMALL, grid=grid)
        prim = ImagingChain(phantom, SMALL, grid=grid, scatter=False)
        t, _ = total.mean_signal(KUB, TECH, {}, method="exact")
        p, _ = prim.mean_signal(KUB, TECH, {}, method="exact")
        pp, tt = (
            float(p[r - 3 : r + 3, c - 3 : c + 3].mean()),
            float(t[r - 3 : r + 3, c - 3 : c + 3].mean()),
        )
        return pp, tt - pp

    p_ng, s_ng = parts(None)
    p_g, s_g = parts(Grid())
    assert 3.0 <= s_ng / p_ng <= 6.0  # as 20 cm water, large field, no grid
    assert 0.2 <= s_g / p_g <= 0.8  # behind a 12:1 grid
    assert 0.55 <= p_g / p_ng <= 0.75  # T_p


def test_off_focus_grid_loses_primary_at_the_edges_as_published(phantom: Phantom) -> None:
    # the same 12:1 grid focused at 1150 mm and at 1000 mm, both used at SID 1000 mm: same
    # spectra behind the patient, only the cut-off differs
    g = ViewGeometry(sid_mm=1000.0)
    off = ImagingChain(phantom, SMALL, grid=Grid(focus_mm=1150.0), scatter=False)
    on = ImagingChain(phantom, SMALL, grid=Grid(focus_mm=1000.0), scatter=False)
    a, _ = off.mean_signal(g, TECH, {}, method="exact")
    b, _ = on.mean_signal(g, TECH, {}, method="exact")
    ratio = a / np.maximum(b, 1e-9)
    row = SMALL.rows // 2
    x_mm = (np.arange(SMALL.cols) + 0.5 - SMALL.cols / 2) * SMALL.pixel_mm
    for x in (-150.0, 100.0, 150.0):
        col = int(np.argmin(np.abs(x_mm - x)))
        expected = 1.0 - 12.0 * abs(x_mm[col]) * abs(1.0 / 1150.0 - 1.0 / 1000.0)
        assert float(ratio[row, col]) == pytest.approx(expected, abs=0.02)
    assert float(ratio[row, SMALL.cols // 2]) == pytest.approx(1.0, abs=0.01)


def test_angling_along_the_strips_keeps_the_primary_across_them_cuts_it_off(
    phantom: Phantom,
) -> None:
    caudad = ViewGeometry(tube_angle_deg=15.0)
    assert math.atan(1.0 / 12.0) < math.radians(15.0)

    def central_primary(grid: Grid | None) -> float:
        ch = ImagingChain(phantom, SMALL, grid=grid, scatter=False)
        return centre(ch.mean_signal(caudad, TECH, {}, method="exact")[0])

    free = central_primary(None)
    along = central_primary(Grid(strips_along="rows"))  # bucky: strips along the table
    across = central_primary(Grid(strips_along="cols"))
    assert 0.55 <= along / free <= 0.75  # T_p only
    assert across / free < 0.02  # cut off
