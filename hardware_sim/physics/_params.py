"""The imaging chain's parameters and result: view geometry, technique, rendered frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U16 = npt.NDArray[np.uint16]


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


TechKey = tuple[ViewGeometry, float, float, float, float]


def tech_key(g: ViewGeometry, t: TechniqueParams) -> TechKey:
    """Cache key of the spectral precomputes (mAs scales them and is applied per frame; the
    focal spot sets the detail's blur)."""
    return (
        g,
        round(t.kvp, 1),
        round(t.filtration_mm_al, 2),
        round(t.filtration_mm_cu, 2),
        round(t.focal_spot_mm, 2),
    )
