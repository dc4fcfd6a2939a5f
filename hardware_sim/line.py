"""The line contrast flows through: cannula plus extension tubing (Hagen–Poiseuille)."""

from __future__ import annotations

import math

from .scenario import Scenario

#: Internal diameter (mm) of IV cannulas by gauge (ISO 10555-5 typical thin-wall values).
CANNULA_ID_MM = {14: 1.70, 16: 1.32, 18: 1.00, 20: 0.80, 22: 0.64, 24: 0.47}

#: Entrance, junction and non-Poiseuille losses on top of laminar flow. Calibrated so an
#: 18 G line at 2.5 mL/s with Ultravist 300 at 20 °C (13 mPa·s) lands inside the measured
#: 38–60 psi (262–414 kPa) band [S94] (here ≈ 43 psi).
MINOR_LOSS_FACTOR = 1.8


def line_resistance_kpa_s_ml(scenario: Scenario) -> float:
    """Pressure per unit flow (kPa per mL/s) of cannula + extension tubing (Hagen–Poiseuille)."""
    viscosity_pa_s = scenario.contrast_viscosity_mpa_s * 1e-3
    access = scenario.access
    cannula_r_m = CANNULA_ID_MM.get(access.gauge, 1.0) / 2000.0
    tubing_r_m = access.tubing_inner_diameter_mm / 2000.0

    def tube(length_mm: float, radius_m: float) -> float:
        return 8.0 * viscosity_pa_s * (length_mm / 1000.0) / (math.pi * radius_m**4)

    pa_per_m3_s = tube(access.cannula_length_mm, cannula_r_m) + tube(
        access.tubing_length_mm, tubing_r_m
    )
    # 1 mL/s = 1e-6 m³/s; 1 kPa = 1e3 Pa
    return MINOR_LOSS_FACTOR * pa_per_m3_s * 1e-6 / 1e3
