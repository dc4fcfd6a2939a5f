"""Nephrotomography layer heights for the patient on the table.

A tomo step may give its layers as offsets from the kidneys' mid-plane
(``layer_offsets_mm``, see :class:`~scheduler.protocol.TomoStep`).  The mid-plane height
above the table top comes from what the room knows about the patient, first found wins
(decision 0017):

1. ``kidney_midplane_mm`` — a simulated room knows its patient's kidneys exactly;
2. ``patient_ap_thickness_cm`` — the patient's AP diameter (the record, or the technologist's
   caliper measurement): the kidneys lie about a third of it above the table [S10][S12][S22];
3. neither: the nominal mid-plane of the protocol's planning (75 mm, a 22-cm adult), so the
   exam still cuts where a fixed-height protocol would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .protocol import NOMINAL_KIDNEY_MIDPLANE_MM, TomoStep

MIDPLANE_FRACTION_OF_AP = 1.0 / 3.0
MIN_LAYER_MM, MAX_LAYER_MM = 10.0, 300.0  # TomoStep's range for heights


def kidney_midplane_mm(info: Mapping[str, Any]) -> tuple[float, str]:
    """(mid-plane height above the table top in mm, where it came from)."""
    known = info.get("kidney_midplane_mm")
    if isinstance(known, int | float) and not isinstance(known, bool) and known > 0:
        return float(known), "room"
    ap = info.get("patient_ap_thickness_cm")
    if isinstance(ap, int | float) and not isinstance(ap, bool) and ap > 0:
        return float(ap) * 10.0 * MIDPLANE_FRACTION_OF_AP, "ap_thickness"
    return NOMINAL_KIDNEY_MIDPLANE_MM, "nominal"


def layer_heights(step: TomoStep, info: Mapping[str, Any]) -> tuple[float, ...]:
    """The heights above the table top to reconstruct: the step's own, or its offsets from
    this patient's kidney mid-plane (kept within 10–300 mm)."""
    if step.layer_offsets_mm is None:
        return tuple(step.layer_heights_mm)
    mid, _ = kidney_midplane_mm(info)
    return tuple(
        round(min(max(mid + o, MIN_LAYER_MM), MAX_LAYER_MM), 1) for o in step.layer_offsets_mm
    )
