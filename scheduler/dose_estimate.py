"""Dose estimates before an exam, from the technique alone.

Entrance air kerma from tube output at 100 cm [S125] by inverse square to the skin: an
order-of-magnitude planning figure (preflight, the dose monitor's fluoroscopy rate check,
``fluoroctl plan``), not a measurement.
"""

from __future__ import annotations

import numpy as np

#: Tube output, air kerma µGy/mAs at 100 cm, 2.5 mm Al, W anode (SpekPy, research §5.2).
OUTPUT_KV = np.array([60.0, 70.0, 75.0, 80.0, 120.0])
OUTPUT_UGY_PER_MAS = np.array([48.9, 64.9, 73.3, 82.0, 158.7])

#: source-to-image distance the engine sets for every view
SID_MM = 1150.0
TABLE_TO_DETECTOR_MM = 60.0


def tube_output_ugy_per_mas(kv: float) -> float:
    return float(np.interp(kv, OUTPUT_KV, OUTPUT_UGY_PER_MAS))


def entrance_kerma_mgy(kv: float, mas: float, ap_thickness_mm: float = 220.0) -> float:
    skin_distance_mm = SID_MM - TABLE_TO_DETECTOR_MM - ap_thickness_mm
    return tube_output_ugy_per_mas(kv) * mas * (1000.0 / skin_distance_mm) ** 2 / 1000.0
